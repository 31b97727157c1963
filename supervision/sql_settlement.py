"""SQL adapter for settlement: read and append statement versions (the emergency's facts are read by
vreserve/sql_supply.py, shared with the assessments)."""
from __future__ import annotations

from datetime import date

import psycopg
from psycopg.rows import dict_row

from supervision.settlement import Line, StatementVersion
from vreserve.sql_supply import (  # noqa: F401 - the old import path of the facts
    Facts,
    SettlementError,
    load_emergency,
    load_facts,
)


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

