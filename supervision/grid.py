"""Grid management view: per grid cell, sites, contracted vs reported vs audited stock, open alerts.

contracted = committed quantity of contracts valid today; reported = latest readings
(``stock_latest``); audited = the latest audit count of each audited (site, material), shown with
the reported quantity of those same pairs so the two can be compared. Quantities are per material,
in its unit.
"""
from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from vreserve.money import fmt_qty
from vreserve.tables import table

_PAIRS = """
WITH pairs AS (
    SELECT site_id, material_id FROM contracts WHERE valid_from <= current_date AND valid_to >= current_date
    UNION SELECT site_id, material_id FROM stock_latest
), committed AS (
    SELECT site_id, material_id, sum(committed_qty) AS qty FROM contracts
    WHERE valid_from <= current_date AND valid_to >= current_date GROUP BY 1, 2
), audited AS (
    SELECT DISTINCT ON (a.site_id, c.material_id) a.site_id, c.material_id, c.counted_qty, c.reported_qty, a.at
    FROM audits a JOIN audit_counts c USING (audit_id)
    ORDER BY a.site_id, c.material_id, a.at DESC, a.audit_id DESC
)
SELECT s.grid_cell, s.site_id, s.owner_kind, s.status, s.trust, p.material_id, m.unit,
       COALESCE(cm.qty, 0) AS contracted, sl.qty AS reported, au.counted_qty AS audited,
       au.reported_qty AS reported_at_audit, au.at AS audited_at
FROM pairs p JOIN sites s USING (site_id) JOIN materials m USING (material_id)
LEFT JOIN committed cm USING (site_id, material_id)
LEFT JOIN stock_latest sl USING (site_id, material_id)
LEFT JOIN audited au USING (site_id, material_id)
WHERE (%(cell)s::text IS NULL OR s.grid_cell = %(cell)s)
ORDER BY s.grid_cell, s.site_id, p.material_id
"""


def cell_rows(conn: psycopg.Connection, cell: str | None = None) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(_PAIRS, {"cell": cell}).fetchall()


def site_counts(conn: psycopg.Connection, cell: str | None = None) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT grid_cell, count(*), count(*) FILTER (WHERE status = 'suspended'), avg(trust) FROM sites"
        " WHERE (%(cell)s::text IS NULL OR grid_cell = %(cell)s) GROUP BY grid_cell", {"cell": cell}).fetchall()
    return {r[0]: {"sites": r[1], "suspended": r[2], "mean_trust": float(r[3])} for r in rows}


def open_alerts(conn: psycopg.Connection, cell: str | None = None) -> dict[str, dict[str, int]]:
    """Open alerts per cell and kind (an alert belongs to its cell, or to its site's cell)."""
    rows = conn.execute(
        "SELECT COALESCE(a.grid_cell, s.grid_cell) AS cell, a.kind, count(*) FROM alerts a"
        " LEFT JOIN sites s USING (site_id) WHERE a.resolved_at IS NULL"
        " AND (%(cell)s::text IS NULL OR COALESCE(a.grid_cell, s.grid_cell) = %(cell)s) GROUP BY 1, 2",
        {"cell": cell}).fetchall()
    out: dict[str, dict[str, int]] = {}
    for c, kind, n in rows:
        out.setdefault(c or "-", {})[kind] = int(n)
    return out


def summarise(rows: list[dict]) -> list[dict]:
    """Per (cell, material) totals."""
    acc: dict[tuple[str, str], dict] = {}
    for r in rows:
        a = acc.setdefault((r["grid_cell"], r["material_id"]), {
            "grid_cell": r["grid_cell"], "material_id": r["material_id"], "unit": r["unit"], "contracted": 0,
            "reported": 0, "audited_sites": 0, "audited": 0, "reported_at_audit": 0})
        a["contracted"] += r["contracted"] or 0
        a["reported"] += r["reported"] or 0
        if r["audited"] is not None:
            a["audited_sites"] += 1
            a["audited"] += r["audited"]
            a["reported_at_audit"] += r["reported_at_audit"]
    return [acc[k] for k in sorted(acc)]


def render(conn: psycopg.Connection, cell: str | None = None) -> str:
    rows = cell_rows(conn, cell)
    counts = site_counts(conn, cell)
    alerts = open_alerts(conn, cell)
    if cell is not None and cell not in counts:
        raise LookupError(f"no sites in grid cell {cell!r}")
    parts = []
    cells = sorted(counts)
    parts.append(table(
        ["grid cell", "sites", "suspended", "mean trust (0..1)", "open alerts", "alerts by kind"],
        [[c, counts[c]["sites"], counts[c]["suspended"], f"{counts[c]['mean_trust']:.2f}",
          sum(alerts.get(c, {}).values()),
          ", ".join(f"{k} {n}" for k, n in sorted(alerts.get(c, {}).items())) or "-"] for c in cells]))
    parts.append("")
    parts.append(table(
        ["grid cell", "material", "contracted", "reported", "audited sites", "audited count", "reported at audit", "unit"],
        [[s["grid_cell"], s["material_id"], fmt_qty(s["contracted"], 1), fmt_qty(s["reported"], 1), s["audited_sites"],
          fmt_qty(s["audited"], 1) if s["audited_sites"] else "-",
          fmt_qty(s["reported_at_audit"], 1) if s["audited_sites"] else "-", s["unit"]] for s in summarise(rows)]))
    if cell is not None:
        parts.append(f"\nSites of {cell}")
        parts.append(table(
            ["site", "owner kind", "status", "trust", "material", "contracted", "reported", "audited", "unit",
             "audited at"],
            [[r["site_id"], r["owner_kind"], r["status"], f"{r['trust']:.2f}", r["material_id"],
              fmt_qty(r["contracted"], 1), "-" if r["reported"] is None else fmt_qty(r["reported"], 1),
              "-" if r["audited"] is None else fmt_qty(r["audited"], 1), r["unit"],
              "-" if r["audited_at"] is None else f"{r['audited_at']:%Y-%m-%d %H:%M}"] for r in rows]))
    return "\n".join(parts)
