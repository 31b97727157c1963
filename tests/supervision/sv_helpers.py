"""Helpers (imported as sv_helpers) that write a small registry, contracts, readings, an emergency and its orders.

Everything is named with the test's ``unique`` token, because the session database is shared by
all tests of the session.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@dataclass
class World:
    """Names used by one test: region, grid cell, material ids."""

    u: str
    region: str
    cell: str
    masks: str
    water: str


def add_site(conn, w: World, site_id: str, owner_id: str, owner_kind: str = "enterprise", cell: str | None = None,
             trust: float = 1.0, status: str = "active") -> None:
    conn.execute(
        "INSERT INTO sites (site_id, name, owner_id, owner_kind, tier, region, grid_cell, lat, lon, status, trust)"
        " VALUES (%s, %s, %s, %s, 'centralized', %s, %s, 30.5, 114.3, %s, %s)",
        (site_id, site_id, owner_id, owner_kind, w.region, cell or w.cell, status, trust))


def add_contract(conn, contract_id: str, site_id: str, material_id: str, committed: float, valid_from: date,
                 valid_to: date, standby: float = 0, call_off: int = 0, response_min: int = 0, penalty: int = 0,
                 grace: float | None = None, late_penalty: int | None = None) -> None:
    conn.execute(
        "INSERT INTO contracts VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (contract_id, site_id, material_id, committed, valid_from, valid_to, standby, call_off, response_min, penalty))
    if grace is not None or late_penalty is not None:
        conn.execute("INSERT INTO contract_penalty_terms (contract_id, penalty_grace_share,"
                     " late_penalty_minor_per_unit, source) VALUES (%s,%s,%s,'test')",
                     (contract_id, grace or 0, late_penalty or 0))


def add_stock(conn, site_id: str, material_id: str, qty: float, unit: str, ts: datetime | None = None) -> None:
    conn.execute(
        "INSERT INTO stock_latest (site_id, material_id, qty, unit, ts, seq) VALUES (%s,%s,%s,%s,%s,1)"
        " ON CONFLICT (site_id, material_id) DO UPDATE SET qty = EXCLUDED.qty, ts = EXCLUDED.ts",
        (site_id, material_id, qty, unit, ts or datetime.now(timezone.utc)))


def add_emergency(conn, w: World, emergency_id: str, declared_at: datetime, ended_at: datetime | None,
                  periods: int = 6, period_length_s: float = 3600.0) -> None:
    conn.execute(
        "INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods, period_length_s,"
        " demand_source, ended_at) VALUES (%s,%s,%s,'test','test',%s,%s,'test',%s)",
        (emergency_id, w.region, declared_at, periods, period_length_s, ended_at))
    conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,'optimal')",
                 (f"P-{emergency_id}", emergency_id, declared_at))


def add_order(conn, emergency_id: str, order_id: str, site_id: str, material_id: str, qty: float, unit: str,
              created_at: datetime, status: str = "open") -> None:
    conn.execute(
        "INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination, material_id,"
        " qty, unit, status, created_at, status_at) VALUES (%s,%s,%s,1,'supply',%s,'DC-1',%s,%s,%s,%s,%s,%s)",
        (order_id, f"P-{emergency_id}", emergency_id, site_id, material_id, qty, unit, status, created_at, created_at))


def add_status(conn, status_id: str, order_id: str, status: str, at: datetime, qty: float | None = None) -> None:
    conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty) VALUES (%s,%s,%s,%s,%s)",
                 (status_id, order_id, status, at, qty))
    conn.execute("UPDATE dispatch_orders SET status = %s, status_at = %s WHERE order_id = %s", (status, at, order_id))
