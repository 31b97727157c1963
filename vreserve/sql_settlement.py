"""SQL adapter for settlement: read and append statement versions, and :func:`settle`, the one run
that `vreserve settle` and ``POST /api/v1/emergencies/{id}/settlement`` share (the emergency's facts
are read by vreserve/sql_supply.py, shared with the assessments; the arithmetic is the pure
vreserve/settlement.py)."""
from __future__ import annotations

import time
from datetime import date
from typing import Callable

import psycopg
from psycopg.rows import dict_row

from vreserve import settlement as st
from vreserve.settlement import Line, SettleResult, StatementVersion
from vreserve.sql_supply import SettlementError, load_facts


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
                                    tuple(h["late_status_ids"]), lines, tuple(h["basis_status_ids"]),
                                    h["issued_by"]))
    return out


def store_version(conn: psycopg.Connection, v: StatementVersion) -> bool:
    """Append one version; False if another run stored this version first (then nothing changes)."""
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO settlement_statements (statement_id, emergency_id, version, kind, period_from, period_to,"
            " issued_at, content_hash, total_minor, late_status_ids, basis_status_ids, issued_by)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (v.statement_id, v.emergency_id, v.version, v.kind, v.period_from, v.period_to, v.issued_at,
             v.content_hash, v.total_minor, list(v.late_status_ids), list(v.basis_status_ids),
             v.issued_by)).rowcount
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



def settle(conn: psycopg.Connection, emergency_id: str, issued_by: str,
           period_from: date | None = None, period_to: date | None = None,
           progress: Callable[[str], None] = lambda _m: None) -> SettleResult:
    """Compute the emergency's statement, compare it with what was issued, append a version if it
    changed (``issued_by``: the authenticated actor). Running it again with no new facts issues
    nothing; a status record received after the last version makes an ADJUSTMENT with only the change."""
    t0 = time.perf_counter()
    facts = load_facts(conn, emergency_id)
    progress(f"read {len(facts.orders)} supply order(s), {sum(len(o.events) for o in facts.orders)} status record(s), "
             f"{len(facts.terms)} contract(s) of {len(facts.standby_sites)} site(s) in "
             f"{time.perf_counter() - t0:.1f} s")
    em = facts.emergency
    dflt = st.default_period(em.declared_at, em.ended_at, em.periods, em.period_length_s)
    stored = load_versions(conn, emergency_id)
    if stored and period_from is None and period_to is None:
        period_from, period_to = stored[0].period_from, stored[0].period_to
    period_from = period_from or dflt[0]
    period_to = period_to or dflt[1]
    if period_to < period_from:
        raise SettlementError(f"settlement period ends ({period_to}) before it starts ({period_from})")
    period_check(stored, period_from, period_to)
    progress(f"{len(stored)} version(s) issued before; computing the statement for {period_from}..{period_to}")
    comp = st.compute(facts.sites, facts.terms, facts.orders, facts.standby_sites, period_from, period_to, facts.units)
    comp.warnings[:0] = facts.warnings
    progress(f"{len(comp.lines)} line(s) computed in {time.perf_counter() - t0:.1f} s")
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    basis = [e.status_id for o in facts.orders for e in o.events]
    version = st.next_version(emergency_id, stored, comp.lines, period_from, period_to, now, basis, issued_by)
    if version is not None and not store_version(conn, version):
        version = None  # a concurrent run issued it; re-read below
    return SettleResult(load_versions(conn, emergency_id), version, comp)
