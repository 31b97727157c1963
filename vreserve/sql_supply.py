"""SQL adapter for supply-leg facts: an emergency's supply orders with their status records, the
sites in scope and their contracts. Read by settlement and by assessments (CLI and HTTP API)."""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from vreserve.emergencies import Emergency, get_emergency
from vreserve.money import to_decimal
from vreserve.supply import Site, StatusEvent, SupplyOrder, Terms, to_terms


class SettlementError(Exception):
    """Settlement cannot be computed (unknown emergency, changed period...); the message says why."""


@dataclass
class Facts:
    emergency: Emergency
    sites: dict[str, Site]
    terms: list[Terms]
    orders: list[SupplyOrder]
    standby_sites: list[str]
    units: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def load_emergency(conn: psycopg.Connection, emergency_id: str) -> Emergency:
    emergency = get_emergency(conn, emergency_id)
    if emergency is None:
        raise SettlementError(f"unknown emergency {emergency_id!r}")
    return emergency


def load_facts(conn: psycopg.Connection, emergency_id: str) -> Facts:
    """Supply-leg orders with their status records, the sites in scope and their contracts."""
    em = load_emergency(conn, emergency_id)
    cur = conn.cursor(row_factory=dict_row)
    orders_rows = cur.execute(
        "SELECT order_id, origin, material_id, unit, qty, created_at, status FROM dispatch_orders"
        " WHERE emergency_id = %s AND leg = 'supply' ORDER BY order_id", (emergency_id,)).fetchall()
    events: dict[str, list[StatusEvent]] = {}
    for r in cur.execute(
        "SELECT e.status_id, e.order_id, e.status, e.at, e.qty, e.received_at FROM order_status_events e"
        " JOIN dispatch_orders o USING (order_id) WHERE o.emergency_id = %s AND o.leg = 'supply'",
        (emergency_id,),
    ):
        events.setdefault(r["order_id"], []).append(StatusEvent(
            r["status_id"], r["status"], r["at"], None if r["qty"] is None else to_decimal(r["qty"]), r["received_at"]))
    orders = [SupplyOrder(r["order_id"], r["origin"], r["material_id"], r["unit"], to_decimal(r["qty"]),
                          r["created_at"], tuple(events.get(r["order_id"], ())), r["status"]) for r in orders_rows]
    # Sites in scope: the emergency's region (and cells, if it named some), plus every ordered site.
    if em.grid_cells:
        scope = cur.execute("SELECT site_id FROM sites WHERE region = %s AND grid_cell = ANY(%s)",
                            (em.region, list(em.grid_cells))).fetchall()
    else:
        scope = cur.execute("SELECT site_id FROM sites WHERE region = %s", (em.region,)).fetchall()
    standby = sorted({r["site_id"] for r in scope} | {o.site_id for o in orders})
    sites = {r["site_id"]: Site(r["site_id"], r["owner_id"], r["owner_kind"]) for r in cur.execute(
        "SELECT site_id, owner_id, owner_kind FROM sites WHERE site_id = ANY(%s)", (standby,))}
    unknown = [o for o in orders if o.site_id not in sites]
    warnings = []
    if unknown:
        # Not the owner of any site: nobody to pay or penalise. Said loudly, left out of the lines.
        warnings.append(f"{len(unknown)} supply order(s) from origins that are not registered sites were left "
                        f"out: {', '.join(f'{o.order_id} ({o.site_id})' for o in unknown[:10])}")
        orders = [o for o in orders if o.site_id in sites]
    standby = [s for s in standby if s in sites]
    terms = [to_terms(r) for r in cur.execute(
        "SELECT c.*, COALESCE(p.penalty_grace_share, 0) AS penalty_grace_share,"
        " COALESCE(p.late_penalty_minor_per_unit, 0) AS late_penalty_minor_per_unit"
        " FROM contracts c LEFT JOIN contract_penalty_terms p USING (contract_id)"
        " WHERE c.site_id = ANY(%s) ORDER BY c.contract_id", (standby,))]
    units = {r["material_id"]: r["unit"] for r in cur.execute("SELECT material_id, unit FROM materials")}
    return Facts(em, sites, terms, orders, standby, units, warnings)
