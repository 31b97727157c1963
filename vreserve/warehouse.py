"""The query side: the virtual warehouse per grid cell and material, as the command centre sees it.

``virtual_warehouse`` is the one function programs call (``vreserve stock`` prints it). The same
SQL runs on plain PostgreSQL and TimescaleDB.

Per (grid cell, material), quantities in the material's unit (``materials.unit``):
- reported: sum of each site's latest reading (at ``at``: the latest reading with ts <= at within
  ``lookback`` before at's hour: the hours before from the hourly rollup ``readings_hourly`` (on
  TimescaleDB a continuous aggregate), at's own hour from the history, so a time 20 days back
  costs one hour of raw rows plus one row per key and hour of the rollup, not a scan of the
  history); a reading in another unit is not added but counted in unit_mismatches;
- contracted: sum of ``site_materials.contracted_qty``;
- reserved: sum of qty of supply-leg dispatch orders still open/accepted/in_transit from the
  cell's sites (their current status, also with ``at``);
- safety: the cell's safety level (``safety_levels``; 0 when none is set);
- available = reported - reserved - safety (negative: below safety stock).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg

LATEST_NOW = "SELECT site_id, material_id, qty, unit, ts FROM stock_latest"
#: How far before ``at``'s hour ``virtual_warehouse(at=...)`` looks for a site's last reading: a
#: site silent for longer counts as not reporting at that time (sites report every few seconds to
#: minutes; the stale alert fires after 3 intervals).
STOCK_AT_LOOKBACK = timedelta(hours=6)

LATEST_AT = """
SELECT DISTINCT ON (site_id, material_id) site_id, material_id, qty, unit, ts
FROM (
    SELECT site_id, material_id, qty_last AS qty, unit, last_ts AS ts, NULL::bigint AS boot, NULL::bigint AS seq
    FROM readings_hourly
    WHERE bucket >= date_trunc('hour', %(at)s::timestamptz, 'UTC') - %(lookback)s::interval
      AND bucket < date_trunc('hour', %(at)s::timestamptz, 'UTC')
    UNION ALL
    SELECT site_id, material_id, qty, unit, ts, boot, seq
    FROM stock_readings
    WHERE ts >= date_trunc('hour', %(at)s::timestamptz, 'UTC') AND ts <= %(at)s::timestamptz
) AS candidates
ORDER BY site_id, material_id, ts DESC, boot DESC NULLS LAST, seq DESC NULLS LAST
"""

WAREHOUSE = """
WITH latest AS ({latest}),
reserved AS (
    SELECT origin AS site_id, material_id, sum(qty) AS qty
    FROM dispatch_orders
    WHERE leg = 'supply' AND status IN ('open', 'accepted', 'in_transit')
    GROUP BY origin, material_id
),
base AS (
    SELECT COALESCE(l.site_id, sm.site_id) AS site_id,
           COALESCE(l.material_id, sm.material_id) AS material_id,
           l.qty, l.unit, l.ts, sm.contracted_qty
    FROM site_materials sm
    FULL JOIN latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
)
SELECT s.grid_cell, b.material_id, m.unit, min(s.region) AS region,
       count(b.contracted_qty)                                    AS sites_contracted,
       count(b.qty)                                               AS sites_reporting,
       COALESCE(sum(b.qty) FILTER (WHERE b.unit = m.unit), 0)     AS reported_qty,
       count(b.qty) FILTER (WHERE b.unit <> m.unit)               AS unit_mismatches,
       COALESCE(sum(b.contracted_qty), 0)                         AS contracted_qty,
       COALESCE(sum(r.qty), 0)                                    AS reserved_qty,
       COALESCE(min(sl.safety_qty), 0)                            AS safety_qty,
       max(b.ts)                                                  AS newest_reading
FROM base b
JOIN sites s ON s.site_id = b.site_id
JOIN materials m ON m.material_id = b.material_id
LEFT JOIN reserved r ON r.site_id = b.site_id AND r.material_id = b.material_id
LEFT JOIN safety_levels sl ON sl.grid_cell = s.grid_cell AND sl.material_id = b.material_id
WHERE (%(grid)s::text IS NULL OR s.grid_cell = %(grid)s::text)
  AND (%(material)s::text IS NULL OR b.material_id = %(material)s::text)
  AND (%(owner_kind)s::text IS NULL OR s.owner_kind = %(owner_kind)s::text)
GROUP BY s.grid_cell, b.material_id, m.unit
ORDER BY s.grid_cell, b.material_id
"""


@dataclass(frozen=True)
class Row:
    """One grid cell's stock of one material; quantities in ``unit``."""

    grid_cell: str
    material_id: str
    unit: str
    region: str
    sites_contracted: int
    sites_reporting: int
    reported_qty: Decimal
    unit_mismatches: int
    contracted_qty: Decimal
    reserved_qty: Decimal
    safety_qty: Decimal
    newest_reading: datetime | None

    @property
    def available_qty(self) -> Decimal:
        """Reported stock left above the safety level once open orders are taken out."""
        return self.reported_qty - self.reserved_qty - self.safety_qty

    def to_dict(self) -> dict:
        d = asdict(self)
        d["available_qty"] = self.available_qty
        for k, v in d.items():
            if isinstance(v, Decimal):
                d[k] = float(v)
            elif isinstance(v, datetime):
                d[k] = v.isoformat()
        return d


def virtual_warehouse(conn: psycopg.Connection, grid: str | None = None, material: str | None = None,
                      owner_kind: str | None = None, at: datetime | None = None,
                      lookback: timedelta = STOCK_AT_LOOKBACK) -> list[Row]:
    """The virtual warehouse now (or as reported at ``at``), optionally filtered."""
    sql = WAREHOUSE.format(latest=LATEST_AT if at is not None else LATEST_NOW)
    params = {"grid": grid, "material": material, "owner_kind": owner_kind, "at": at, "lookback": lookback}
    return [Row(*r) for r in conn.execute(sql, params).fetchall()]


@dataclass(frozen=True)
class HourlyStock:
    """One site's stock of one material in one hour (the hour's last reading, and its range), in
    ``unit``. Floats: a chart needs no exact decimals, and 7,200 rows decode several times faster."""

    bucket: datetime
    material_id: str
    unit: str | None
    qty_last: float
    qty_min: float
    qty_max: float
    readings: int


SITE_HISTORY = """
SELECT bucket, material_id, unit, qty_last::float8, qty_min::float8, qty_max::float8, n_readings
FROM readings_hourly
WHERE site_id = %(site)s AND bucket >= %(since)s AND bucket < %(until)s
ORDER BY material_id, bucket
"""


def site_history(conn: psycopg.Connection, site_id: str, until: datetime | None = None,
                 days: int = 30) -> list[HourlyStock]:
    """One site's hourly stock per material over ``days`` up to ``until`` (default now), from the
    hourly rollup (TimescaleDB: the continuous aggregate): the console's history chart. Hours in
    which the site sent nothing are absent."""
    until = until or conn.execute("SELECT now()").fetchone()[0]
    params = {"site": site_id, "since": until - timedelta(days=days), "until": until}
    return [HourlyStock(*r) for r in conn.execute(SITE_HISTORY, params, binary=True).fetchall()]


def totals_by_material(rows: list[Row]) -> list[dict]:
    """Sum of the rows per material (all shown grid cells), for the summary lines."""
    out: dict[str, dict] = {}
    for r in rows:
        t = out.setdefault(r.material_id, {
            "material_id": r.material_id, "unit": r.unit, "grid_cells": 0, "sites_reporting": 0,
            "reported_qty": Decimal(0), "contracted_qty": Decimal(0), "reserved_qty": Decimal(0),
            "safety_qty": Decimal(0), "available_qty": Decimal(0)})
        t["grid_cells"] += 1
        t["sites_reporting"] += r.sites_reporting
        for k in ("reported_qty", "contracted_qty", "reserved_qty", "safety_qty"):
            t[k] += getattr(r, k)
        t["available_qty"] += r.available_qty
    return [{k: float(v) if isinstance(v, Decimal) else v for k, v in t.items()} for t in out.values()]
