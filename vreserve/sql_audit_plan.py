"""SQL adapter for audit plans: the risk facts of every site, and drawn plans kept as records.

One code path for `vreserve audit plan` and `POST /api/v1/audit-plans`: :func:`draw_plan` weighs
the sites (vreserve/audit_plan.py), draws, and keeps the plan with the actor who first drew it, the
seed and each drawn site's weight and reasons, so anyone can reproduce the draw; every draw is in
the audit trail, so re-drawing until a favoured site drops out is visible.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import psycopg

from vreserve import audit_plan as ap
from vreserve.reconcile import FINDING_KINDS


@dataclass(frozen=True)
class AuditPlan:
    plan_id: str
    drawn_at: datetime
    drawn_by: str
    seed: int
    count: int
    grid_cell: str | None
    sites_considered: int
    total_weight: float
    drawn: tuple[ap.WeightedSite, ...]


class NoSitesToDraw(LookupError):
    """The registry (or the grid cell) has no site to draw from."""


def site_risks(conn: psycopg.Connection, on: datetime | None = None) -> list[ap.SiteRisk]:
    """Per site: contracted stock value (valid contracts), open unexplained stock findings (a
    critical one counts 3), past discrepancies."""
    rows = conn.execute(
        """
        SELECT s.site_id, s.grid_cell, s.status,
               COALESCE((SELECT sum(c.committed_qty * GREATEST(c.call_off_price_minor_per_unit, 1))
                         FROM contracts c WHERE c.site_id = s.site_id
                           AND c.valid_from <= COALESCE(%(on)s, now())::date
                           AND c.valid_to >= COALESCE(%(on)s, now())::date), 0) AS value,
               (SELECT coalesce(sum(CASE WHEN a.severity = 'critical' THEN 3 ELSE 1 END), 0)
                FROM alerts a WHERE a.site_id = s.site_id AND a.resolved_at IS NULL
                  AND a.kind = ANY(%(findings)s)) AS findings,
               (SELECT count(DISTINCT d.audit_id) FROM audit_discrepancies d WHERE d.site_id = s.site_id) AS past
        FROM sites s ORDER BY s.site_id
        """, {"on": on, "findings": list(FINDING_KINDS)}).fetchall()
    return [ap.SiteRisk(r[0], r[1], float(r[3]), int(r[4]), int(r[5]), r[2] == "suspended") for r in rows]


def plan_id_of(seed: int, count: int, grid_cell: str | None, drawn: list[ap.WeightedSite]) -> str:
    """A plan is named by what it is: the same inputs drawing the same sites with the same weights
    are the same plan (drawing it again adds an audit-trail record, not a second plan)."""
    text = f"{seed}|{count}|{grid_cell or ''}|" + ";".join(f"{w.risk.site_id}:{w.weight:.9f}" for w in drawn)
    return "AP-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def draw_plan(conn: psycopg.Connection, actor: str, count: int, seed: int,
              grid_cell: str | None = None) -> tuple[AuditPlan, bool]:
    """Weigh every site (of ``grid_cell``), draw ``count``, keep the plan; True if it is new.

    Raises NoSitesToDraw."""
    risks = site_risks(conn)
    if grid_cell:
        risks = [r for r in risks if r.grid_cell == grid_cell]
    if not risks:
        raise NoSitesToDraw("no sites to draw from" + (f" in grid cell {grid_cell}" if grid_cell else ""))
    weighted = ap.weigh(risks)
    drawn = ap.draw(weighted, count, seed)
    plan_id = plan_id_of(seed, count, grid_cell, drawn)
    total = sum(w.weight for w in weighted)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO audit_plans (plan_id, drawn_by, seed, count, grid_cell, sites_considered, total_weight)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (plan_id) DO NOTHING RETURNING drawn_at",
            (plan_id, actor, seed, count, grid_cell, len(risks), total)).fetchone()
        if row is not None:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO audit_plan_sites (plan_id, rank, site_id, grid_cell, weight, reasons)"
                                " VALUES (%s,%s,%s,%s,%s,%s)",
                                [(plan_id, i + 1, w.risk.site_id, w.risk.grid_cell, w.weight, list(w.reasons))
                                 for i, w in enumerate(drawn)])
    kept = conn.execute("SELECT drawn_at, drawn_by FROM audit_plans WHERE plan_id = %s", (plan_id,)).fetchone()
    return AuditPlan(plan_id, kept[0], kept[1], seed, count, grid_cell, len(risks), total, tuple(drawn)), row is not None


PLANS_SQL = """SELECT plan_id, drawn_at, drawn_by, seed, count, grid_cell, sites_considered, total_weight
FROM audit_plans WHERE (%(id)s::text IS NULL OR plan_id = %(id)s) ORDER BY drawn_at DESC, plan_id"""

#: The drawn sites of a plan, each with the first audit of it recorded since the plan was drawn.
PLAN_SITES_SQL = """SELECT ps.rank, ps.site_id, ps.grid_cell, ps.weight, ps.weight / p.total_weight AS weight_share,
    ps.reasons, a.audit_id AS audited_by, a.at AS audited_at, a.passed AS audit_passed
FROM audit_plan_sites ps JOIN audit_plans p USING (plan_id)
LEFT JOIN LATERAL (SELECT audit_id, at, passed FROM audits WHERE site_id = ps.site_id AND at >= p.drawn_at
                   ORDER BY at, audit_id LIMIT 1) a ON true
WHERE ps.plan_id = %(id)s ORDER BY ps.rank"""
