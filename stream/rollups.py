"""The worker's periodic work in SQL: aggregates, stale and low-stock checks, hourly rollup, outbox.

Aggregates are recomputed from ``stock_latest`` and the registry rather than summed from deltas in
Faust: under at-least-once delivery a replayed delta would count twice, while a recomputation from
the idempotent latest state is exact whatever was replayed. Every check runs under a transaction-
scoped advisory lock, so several workers never raise the same condition twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from vreserve import reconcile
from vreserve.schemas.alerts import Alert

log = logging.getLogger(__name__)

#: Advisory lock id for the periodic checks (any constant shared by all workers).
CHECKS_LOCK = 0x7652_0020
#: Alert kinds the stream worker raises and publishes (others' alerts are theirs to publish).
STREAM_ALERT_KINDS = ["stale", "low_stock", "jump", *reconcile.FINDING_KINDS]

REFRESH_AGGREGATES = """
WITH base AS (
    SELECT COALESCE(l.site_id, sm.site_id)         AS site_id,
           COALESCE(l.material_id, sm.material_id) AS material_id,
           l.qty, l.ts, sm.contracted_qty
    FROM site_materials sm
    FULL JOIN stock_latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
), scoped AS (
    SELECT b.*, s.grid_cell, s.owner_kind, m.unit
    FROM base b
    JOIN sites s ON s.site_id = b.site_id
    JOIN materials m ON m.material_id = b.material_id
)
INSERT INTO stock_aggregates (dimension, dim_key, material_id, unit, reported_qty, contracted_qty,
                              sites_contracted, sites_reporting, sites_stale, refreshed_at)
SELECT CASE WHEN GROUPING(grid_cell) = 0 THEN 'grid_cell'
            WHEN GROUPING(owner_kind) = 0 THEN 'owner_kind' ELSE 'material' END,
       CASE WHEN GROUPING(grid_cell) = 0 THEN grid_cell
            WHEN GROUPING(owner_kind) = 0 THEN owner_kind ELSE '*' END,
       material_id, min(unit),
       COALESCE(sum(qty), 0), COALESCE(sum(contracted_qty), 0),
       count(contracted_qty), count(qty),
       count(qty) FILTER (WHERE ts < now() - make_interval(secs => %(stale_after_s)s)),
       now()
FROM scoped
GROUP BY GROUPING SETS ((grid_cell, material_id), (owner_kind, material_id), (material_id))
"""

# Stale: a site whose newest reading (over all its materials) is older than the threshold. The
# id carries that newest ts, so one silence is one alert however often the check runs.
RAISE_STALE = """
WITH last AS (SELECT site_id, max(ts) AS last_ts FROM stock_latest GROUP BY site_id)
INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details)
SELECT 'stale:' || l.site_id || ':' || to_char(l.last_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       'stale', 'warning', l.site_id, s.grid_cell, NULL,
       format('site %%s silent since %%s (%%s s, more than %%s reading intervals of %%s s)',
              l.site_id, to_char(l.last_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              round(extract(epoch FROM now() - l.last_ts)), %(intervals)s, %(interval_s)s),
       now(),
       jsonb_build_object('last_ts', l.last_ts, 'silent_s', round(extract(epoch FROM now() - l.last_ts)),
                          'threshold_s', %(stale_after_s)s)
FROM last l
LEFT JOIN sites s ON s.site_id = l.site_id
WHERE l.last_ts < now() - make_interval(secs => %(stale_after_s)s)
  AND COALESCE(s.status, 'active') = 'active'
ON CONFLICT (alert_id) DO NOTHING
"""

RESOLVE_STALE = """
UPDATE alerts a SET resolved_at = now(), published_at = NULL
FROM (SELECT site_id, max(ts) AS last_ts FROM stock_latest GROUP BY site_id) l
WHERE a.kind = 'stale' AND a.resolved_at IS NULL AND a.site_id = l.site_id
  AND l.last_ts > (a.details->>'last_ts')::timestamptz
"""

# Low stock: reported quantity in a grid cell below its safety level (no report at all = 0).
RAISE_LOW_STOCK = """
INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details)
SELECT 'low_stock:' || sl.grid_cell || ':' || sl.material_id || ':'
           || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       'low_stock',
       CASE WHEN COALESCE(a.reported_qty, 0) < sl.safety_qty / 2 THEN 'critical' ELSE 'warning' END,
       NULL, sl.grid_cell, sl.material_id,
       format('%%s in grid cell %%s: %%s %%s reported, below the safety level of %%s %%s',
              sl.material_id, sl.grid_cell, COALESCE(a.reported_qty, 0), m.unit, sl.safety_qty, m.unit),
       now(),
       jsonb_build_object('reported_qty', COALESCE(a.reported_qty, 0), 'safety_qty', sl.safety_qty,
                          'unit', m.unit, 'sites_reporting', COALESCE(a.sites_reporting, 0))
FROM safety_levels sl
JOIN materials m ON m.material_id = sl.material_id
LEFT JOIN stock_aggregates a
       ON a.dimension = 'grid_cell' AND a.dim_key = sl.grid_cell AND a.material_id = sl.material_id
WHERE COALESCE(a.reported_qty, 0) < sl.safety_qty
  AND NOT EXISTS (SELECT 1 FROM alerts o
                  WHERE o.kind = 'low_stock' AND o.resolved_at IS NULL
                    AND o.grid_cell = sl.grid_cell AND o.material_id = sl.material_id)
ON CONFLICT (alert_id) DO NOTHING
"""

RESOLVE_LOW_STOCK = """
UPDATE alerts o SET resolved_at = now(), published_at = NULL
WHERE o.kind = 'low_stock' AND o.resolved_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM safety_levels sl
      LEFT JOIN stock_aggregates a
             ON a.dimension = 'grid_cell' AND a.dim_key = sl.grid_cell AND a.material_id = sl.material_id
      WHERE sl.grid_cell = o.grid_cell AND sl.material_id = o.material_id
        AND COALESCE(a.reported_qty, 0) < sl.safety_qty)
"""

CLAIM_OUTBOX = """
SELECT alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details, resolved_at
FROM alerts
WHERE published_at IS NULL AND kind = ANY(%(kinds)s)
ORDER BY at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""

MARK_PUBLISHED = "UPDATE alerts SET published_at = now() WHERE alert_id = ANY(%(ids)s)"


@dataclass(frozen=True)
class ChecksResult:
    ran: bool                 # False: another worker held the lock
    aggregate_rows: int = 0
    stale_raised: int = 0
    stale_resolved: int = 0
    low_raised: int = 0
    low_resolved: int = 0
    hourly_rows: int = 0
    #: Stock changes reconciled against picks and declared movements (vreserve.reconcile).
    changes_judged: int = 0
    findings_raised: int = 0
    findings_resolved: int = 0
    reconcile_error: str | None = None
    #: wall seconds per step (aggregates, stale, low_stock, reconcile, hourly): what the checks
    #: cost the database, summed on the health page as ``checks_s``
    step_s: dict = field(default_factory=dict)


#: Whether any worker recomputed the aggregates (and so ran the checks) within the last N seconds.
CHECKED_WITHIN = "SELECT EXISTS (SELECT 1 FROM stock_aggregates WHERE refreshed_at > now() - make_interval(secs => %s))"


async def run_checks(conn: psycopg.AsyncConnection, stale_after_s: float, stale_intervals: float,
                     interval_s: float, hourly_range: tuple[datetime, datetime] | None,
                     reconcile_policy: reconcile.Policy | None = None,
                     unless_checked_within_s: float | None = None) -> ChecksResult:
    """Recompute aggregates, raise/resolve stale and low-stock alerts, reconcile stock changes
    (``reconcile_policy`` None: not here), refresh hourly buckets.

    ``unless_checked_within_s``: not again if a worker (this one or another of the group) ran them
    that recently (``ran`` False). Every worker of a group has the timer; the advisory lock only
    keeps two runs from overlapping, so without this N workers ran the checks N times an interval,
    each a pass over every key, for the same result."""
    params = {"stale_after_s": stale_after_s, "intervals": stale_intervals, "interval_s": interval_s}
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (CHECKS_LOCK,))
            if not (await cur.fetchone())[0]:
                return ChecksResult(ran=False)
            if unless_checked_within_s is not None:
                await cur.execute(CHECKED_WITHIN, (unless_checked_within_s,))
                if (await cur.fetchone())[0]:
                    return ChecksResult(ran=False)
            steps: dict[str, float] = {}
            clock = [time.perf_counter()]

            def lap(step: str) -> None:
                now = time.perf_counter()
                steps[step] = now - clock[0]
                clock[0] = now
            await cur.execute("DELETE FROM stock_aggregates")
            await cur.execute(REFRESH_AGGREGATES, params)
            aggregate_rows = cur.rowcount
            lap("aggregates")
            await cur.execute(RESOLVE_STALE)
            stale_resolved = cur.rowcount
            await cur.execute(RAISE_STALE, params)
            stale_raised = cur.rowcount
            lap("stale")
            await cur.execute(RESOLVE_LOW_STOCK)
            low_resolved = cur.rowcount
            await cur.execute(RAISE_LOW_STOCK, {})
            low_raised = cur.rowcount
            lap("low_stock")
            judged, reconcile_error = reconcile.ReconcileResult(), None
            if reconcile_policy is not None:
                try:
                    async with conn.transaction():  # a savepoint: a failure here leaves the other checks
                        judged = await reconcile.reconcile(cur, reconcile_policy)
                except psycopg.Error as exc:
                    reconcile_error = f"stock-change reconciliation failed: {exc}".strip()[:500]
                    log.error("%s", reconcile_error)
                lap("reconcile")
            hourly = 0
            if hourly_range is not None:
                await cur.execute("SELECT stream_refresh_hourly(%s, %s)", hourly_range)
                hourly = (await cur.fetchone())[0]
                lap("hourly")
        t = time.perf_counter()
    steps["commit"] = time.perf_counter() - t
    return ChecksResult(True, aggregate_rows, stale_raised, stale_resolved, low_raised, low_resolved, hourly,
                        judged.judged, judged.alerts_raised, judged.alerts_resolved, reconcile_error, steps)


def alert_from_row(row: tuple) -> Alert:
    alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details, resolved_at = row
    return Alert(alert_id=alert_id, kind=kind, severity=severity, message=message, at=at,
                 site_id=site_id, grid_cell=grid_cell, material_id=material_id,
                 details=details or {}, resolved_at=resolved_at)


async def publish_outbox(conn: psycopg.AsyncConnection, send, limit: int = 1000) -> int:
    """Publish unpublished stream alerts with ``await send(alert)`` (which must be durable on
    return), then mark them. Rows stay locked meanwhile, so a concurrent resolve waits."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.execute(CLAIM_OUTBOX, {"kinds": STREAM_ALERT_KINDS, "limit": limit})
            rows = await cur.fetchall()
            if not rows:
                return 0
            alerts = [alert_from_row(r) for r in rows]
            await send(alerts)
            await cur.execute(MARK_PUBLISHED, {"ids": [a.alert_id for a in alerts]})
    return len(alerts)
