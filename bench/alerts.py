"""``vreserve bench alerts --database DB``: how truthful supervision's alerts were in a finished run.

Run it on a demo's database (``vreserve demo --database vr_x``, kept after the demo). It prints:

* picks the sites answered (first ``in_transit`` with a quantity > 0) and the stock-change findings
  (``unexplained_change``, ``pick_not_reflected``) per 1,000 picks; in a run without injected faults
  every finding is a false alert;
* what the old raw jump rule (a change of more than 50 % of the previous reading) would have raised
  on the same readings, and how many of those came within 30 s after a pick at that site and material;
* the audit plan's top 10 by weight: with the old rule's alerts (open jump + stale alerts, as the
  plan counted them before issue 16) and now (open unexplained findings only).

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import click

from vreserve.settings import Settings

OLD_JUMP_SHARE = 0.5

PICKS = """
SELECT count(*) FROM (
    SELECT DISTINCT ON (e.order_id) e.qty FROM order_status_events e JOIN dispatch_orders o USING (order_id)
    WHERE e.status = 'in_transit' AND o.leg = 'supply' ORDER BY e.order_id, e.at) p
WHERE p.qty > 0
"""

OLD_JUMPS = """
WITH pairs AS (
    SELECT site_id, material_id, ts, qty::float8 AS qty,
           lag(qty::float8) OVER (PARTITION BY site_id, material_id ORDER BY ts) AS prev
    FROM stock_readings
), jumps AS (
    SELECT * FROM pairs WHERE prev IS NOT NULL AND abs(qty - prev) / greatest(prev, 1) > %(share)s
)
SELECT j.site_id,
       EXISTS (SELECT 1 FROM order_status_events e JOIN dispatch_orders o USING (order_id)
               WHERE o.origin = j.site_id AND o.material_id = j.material_id AND e.status = 'in_transit'
                 AND e.at BETWEEN j.ts - interval '30 seconds' AND j.ts) AS after_pick
FROM jumps j
"""


def _top(weighted, n: int = 10) -> list[tuple[str, float]]:
    ranked = sorted(weighted, key=lambda w: (-w.weight, w.risk.site_id))[:n]
    return [(w.risk.site_id, round(w.weight, 3)) for w in ranked]


@click.command("alerts")
@click.option("--database", required=True, help="The run's database (e.g. a demo's --database).")
@click.pass_obj
def command(settings: Settings, database: str) -> None:
    """Findings per 1,000 picks, the old jump rule on the same readings, audit plan top 10 before/after."""
    from dataclasses import replace

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve import audit_plan as ap
    from supervision.sql_audits import site_risks
    from vreserve.db import connect
    from vreserve.reconcile import FINDING_KINDS

    dsn = make_conninfo(**{**conninfo_to_dict(settings.pg_dsn), "dbname": database})
    with connect(dsn, autocommit=True) as conn:
        picks = conn.execute(PICKS).fetchone()[0]
        findings = conn.execute(
            "SELECT kind, severity, resolved_by, count(*) FROM alerts WHERE kind = ANY(%s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (list(FINDING_KINDS),)).fetchall()
        changes = dict(conn.execute("SELECT verdict, count(*) FROM stock_changes GROUP BY 1").fetchall())
        jumps = conn.execute(OLD_JUMPS, {"share": OLD_JUMP_SHARE}).fetchall()
        stale_open = dict(conn.execute("SELECT site_id, count(*) FROM alerts WHERE kind = 'stale'"
                                       " AND resolved_at IS NULL GROUP BY 1").fetchall())
        risks_now = site_risks(conn)
    raised = sum(r[3] for r in findings)
    open_ = sum(r[3] for r in findings if r[2] is None)
    click.echo(f"picks answered at sites: {picks}")
    click.echo(f"stock changes reconciled and stored: {changes} (explained = a movement accounted for it)")
    click.echo(f"findings raised: {raised} ({open_} still open; resolved as explained later: "
               f"{sum(r[3] for r in findings if r[2] == 'system')}) -> "
               f"{1000.0 * raised / picks if picks else 0:.1f} per 1,000 picks")
    for kind, severity, by, n in findings:
        click.echo(f"  {kind:<20} {severity:<8} {'open' if by is None else 'resolved by ' + by:<22} {n}")
    after_pick = sum(1 for j in jumps if j[1])
    click.echo(f"old rule (change > {OLD_JUMP_SHARE:.0%} between readings) on the same readings: {len(jumps)} alerts, "
               f"{after_pick} within 30 s after a pick at that site and material "
               f"({1000.0 * len(jumps) / picks if picks else 0:.1f} per 1,000 picks)")
    old_alerts: dict[str, int] = dict(stale_open)
    for site, _after in jumps:
        old_alerts[site] = old_alerts.get(site, 0) + 1
    before = [replace(r, open_findings=old_alerts.get(r.site_id, 0)) for r in risks_now]
    click.echo("audit plan top 10 by weight, before (old jump + stale alerts) | now (unexplained findings):")
    for i, (b, a) in enumerate(zip(_top(ap.weigh(before)), _top(ap.weigh(risks_now))), 1):
        click.echo(f"  {i:>2}. {b[0]:<22} {b[1]:>6.3f} | {a[0]:<22} {a[1]:>6.3f}")
