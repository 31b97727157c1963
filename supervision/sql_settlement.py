"""SQL adapter for settlement: read the emergency's facts, read and append statement versions."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import psycopg
from psycopg.rows import dict_row

from vreserve.emergencies import Emergency, get_emergency

from supervision.money import to_decimal
from supervision.settlement import (
    Line,
    Site,
    StatementVersion,
    StatusEvent,
    SupplyOrder,
    Terms,
    to_terms,
)


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


def load_versions(conn: psycopg.Connection, emergency_id: str) -> list[StatementVersion]:
    cur = conn.cursor(row_factory=dict_row)
    heads = cur.execute("SELECT * FROM settlement_statements WHERE emergency_id = %s ORDER BY version",
                        (emergency_id,)).fetchall()
    out = []
    for h in heads:
        lines = tuple(Line(
            owner_id=r[0], owner_kind=r[1], site_id=r[2], material_id=r[3], unit=r[4], kind=r[5], qty=r[6],
            rate_minor=r[7], amount_minor=int(r[8]), contract_id=r[9], order_ids=tuple(r[10]), note=r[11],
        ) for r in conn.execute(
            "SELECT owner_id, owner_kind, site_id, material_id, unit, kind, qty, rate_minor, amount_minor, contract_id,"
            " order_ids, note FROM settlement_lines WHERE statement_id = %s ORDER BY line_no", (h["statement_id"],)))
        out.append(StatementVersion(h["statement_id"], h["emergency_id"], h["version"], h["kind"], h["period_from"],
                                    h["period_to"], h["issued_at"], h["content_hash"], int(h["total_minor"]),
                                    tuple(h["late_status_ids"]), lines, tuple(h["basis_status_ids"])))
    return out


def store_version(conn: psycopg.Connection, v: StatementVersion) -> bool:
    """Append one version; False if another run stored this version first (then nothing changes)."""
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO settlement_statements (statement_id, emergency_id, version, kind, period_from, period_to,"
            " issued_at, content_hash, total_minor, late_status_ids, basis_status_ids)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (v.statement_id, v.emergency_id, v.version, v.kind, v.period_from, v.period_to, v.issued_at,
             v.content_hash, v.total_minor, list(v.late_status_ids), list(v.basis_status_ids))).rowcount
        if not inserted:
            return False
        with conn.cursor() as cur, cur.copy(
                "COPY settlement_lines (statement_id, line_no, owner_id, owner_kind, site_id, material_id, unit, kind,"
                " qty, rate_minor, amount_minor, contract_id, order_ids, note) FROM STDIN") as cp:
            for i, l in enumerate(v.lines):
                cp.write_row((v.statement_id, i + 1, l.owner_id, l.owner_kind, l.site_id, l.material_id, l.unit, l.kind,
                              l.qty, l.rate_minor, l.amount_minor, l.contract_id, list(l.order_ids), l.note))
    return True


def period_check(stored: list[StatementVersion], period_from: date, period_to: date) -> None:
    if stored and (stored[0].period_from, stored[0].period_to) != (period_from, period_to):
        raise SettlementError(
            f"{stored[0].statement_id} was issued for {stored[0].period_from}..{stored[0].period_to}; "
            f"settle with the same period (asked {period_from}..{period_to})")

