"""The overview map's data, read from the database in a few set-based queries.

Why its own queries: the map needs every grid cell of every region with a coverage figure and a
bounding box, and every site with its freshness, in one round trip each, fast enough for a
10,000-site registry to render in under a second. Grid cells have no geometry in the registry.
When every cell of a region is named ``<region>-rRRcCC`` (the registry generator's lattice), the
cells are drawn as that lattice over the region's sites' bounding box; otherwise a cell's box is
the bounding box of its own sites (padded so that a one-site cell is visible).

Coverage of a (cell, material) = available / reference, where available = reported - reserved
(open supply orders from the cell's sites) and reference = the cell's safety level of the material
when one is set, else the contracted quantity (what the owners committed). "All materials" is the
mean of the per-material coverages, each capped at 100 %.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

OWNER_KINDS = ("government", "enterprise", "ecommerce", "ngo", "household")
#: Degrees added around a cell's sites so that a cell with one site still has an area.
CELL_PAD_DEG = 0.004
LATTICE_NAME = re.compile(r"-r(\d+)c(\d+)$")

CELL_STOCK_SQL = """
WITH reserved AS (
    SELECT origin AS site_id, material_id, sum(qty) AS qty FROM dispatch_orders
    WHERE leg = 'supply' AND status IN ('open', 'accepted', 'in_transit') GROUP BY 1, 2
)
SELECT s.grid_cell, sm.material_id,
       COALESCE(sum(l.qty::float8) FILTER (WHERE l.unit = m.unit), 0) AS reported,
       COALESCE(sum(sm.contracted_qty::float8), 0) AS contracted,
       COALESCE(sum(r.qty::float8), 0) AS reserved,
       COALESCE(min(sl.safety_qty::float8), 0) AS safety
FROM site_materials sm
JOIN sites s ON s.site_id = sm.site_id
JOIN materials m ON m.material_id = sm.material_id
LEFT JOIN stock_latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
LEFT JOIN reserved r ON r.site_id = sm.site_id AND r.material_id = sm.material_id
LEFT JOIN safety_levels sl ON sl.grid_cell = s.grid_cell AND sl.material_id = sm.material_id
WHERE (%(cells)s::text[] IS NULL OR s.grid_cell = ANY(%(cells)s::text[]))
GROUP BY s.grid_cell, sm.material_id
"""

#: Per contracted (site, material): what CELL_STOCK_SQL sums, one row each, for the live book.
PAIR_STOCK_SQL = """
SELECT sm.site_id, s.grid_cell, sm.material_id, m.unit,
       CASE WHEN l.unit = m.unit THEN l.qty::float8 END,
       sm.contracted_qty::float8, COALESCE(sl.safety_qty, 0)::float8
FROM site_materials sm
JOIN sites s ON s.site_id = sm.site_id
JOIN materials m ON m.material_id = sm.material_id
LEFT JOIN stock_latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
LEFT JOIN safety_levels sl ON sl.grid_cell = s.grid_cell AND sl.material_id = sm.material_id
"""

#: What open supply orders reserve per (site, material): small, re-read whenever orders change.
RESERVED_SQL = """
SELECT origin, material_id, sum(qty)::float8 FROM dispatch_orders
WHERE leg = 'supply' AND status IN ('open', 'accepted', 'in_transit') GROUP BY 1, 2
"""

CELL_GEOMETRY_SQL = """
SELECT grid_cell, min(region), min(lat), min(lon), max(lat), max(lon), count(*),
       count(*) FILTER (WHERE status = 'suspended')
FROM sites GROUP BY grid_cell ORDER BY grid_cell
"""

SITES_SQL = """
SELECT s.site_id, s.owner_kind, s.tier, s.lat, s.lon, s.status, s.grid_cell,
       extract(epoch FROM max(l.ts))::float8
FROM sites s LEFT JOIN stock_latest l ON l.site_id = s.site_id
GROUP BY s.site_id ORDER BY s.site_id
"""

REGIONS_SQL = """
SELECT r.region, e.emergency_id, e.declared_at, e.periods, e.period_length_s, e.declared_by
FROM (SELECT DISTINCT region FROM sites) r
LEFT JOIN emergencies e ON e.region = r.region AND e.ended_at IS NULL
ORDER BY r.region
"""


def coverage(available: float, reference: float) -> float | None:
    """available / reference, None when there is nothing to compare against."""
    if reference <= 0:
        return None
    return max(0.0, available / reference)


def cell_coverages(rows: list[tuple]) -> dict[str, dict[str, Any]]:
    """Per cell: per-material figures and the all-materials coverage (mean of capped coverages)."""
    out: dict[str, dict[str, Any]] = {}
    for cell, material, reported, contracted, reserved, safety in rows:
        available = reported - reserved
        reference = safety if safety > 0 else contracted
        entry = out.setdefault(cell, {"materials": {}, "coverage": None})
        cov = coverage(available, reference)
        entry["materials"][material] = {
            "available": round(available, 3), "reference_qty": round(reference, 3),
            "reference": "safety" if safety > 0 else "contracted", "coverage": None if cov is None else round(cov, 4)}
    for entry in out.values():
        ratios = [min(1.0, m["coverage"]) for m in entry["materials"].values() if m["coverage"] is not None]
        entry["coverage"] = round(sum(ratios) / len(ratios), 4) if ratios else None
    return out


class CellBook:
    """Per (cell, material) sums kept in memory by the live poller: a reading moves the cell's
    reported stock by its difference from the pair's previous reading, so a poll costs no
    aggregate query. Reloaded in full (``PAIR_STOCK_SQL``) when orders change (reserved stock)
    and every minute (contracts, safety levels, registry); reserved stock is re-read whenever orders
    change (:meth:`set_reserved`)."""

    def __init__(self, rows: list[tuple], reserved: list[tuple] = ()) -> None:
        self.pairs: dict[tuple[str, str], list] = {}   # (site, material) -> [cell, unit, qty or None]
        self.sums: dict[str, dict[str, list[float]]] = {}  # cell -> material -> [reported, contracted, reserved, safety]
        for site, cell, material, unit, qty, contracted, safety in rows:
            self.pairs[(site, material)] = [cell, unit, qty]
            acc = self.sums.setdefault(cell, {}).setdefault(material, [0.0, 0.0, 0.0, safety])
            acc[0] += qty or 0.0
            acc[1] += contracted
        self.set_reserved(reserved)

    def set_reserved(self, rows: list[tuple]) -> None:
        """Replace the reserved sums with (site, material, qty) rows of open supply orders."""
        for materials in self.sums.values():
            for acc in materials.values():
                acc[2] = 0.0
        for site, material, qty in rows:
            pair = self.pairs.get((site, material))
            if pair is not None:
                self.sums[pair[0]][material][2] += qty

    def apply(self, site: str, material: str, qty: float, unit: str) -> str | None:
        """Take one reading in; the cell whose sums changed, or None (a pair without a contract)."""
        pair = self.pairs.get((site, material))
        if pair is None:
            return None
        cell, catalogue_unit, before = pair
        now = qty if unit == catalogue_unit else None
        pair[2] = now
        self.sums[cell][material][0] += (now or 0.0) - (before or 0.0)
        return cell

    def coverages(self, cells: list[str]) -> dict[str, dict[str, Any]]:
        rows = [(c, m, *v) for c in cells for m, v in self.sums.get(c, {}).items()]
        return cell_coverages(rows)


def read_cell_stock(conn, cells: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Coverage of the given cells (all cells when None)."""
    return cell_coverages(conn.execute(CELL_STOCK_SQL, {"cells": cells}).fetchall())


def lattice_bounds(cells: list[tuple]) -> dict[str, list[list[float]]]:
    """Bounds of lattice-named cells (row from latitude, column from longitude), per region whose
    cells are all lattice-named; the lattice spans the bounding box of the region's sites."""
    regions: dict[str, list[tuple]] = {}
    for row in cells:
        regions.setdefault(row[1], []).append(row)
    out: dict[str, list[list[float]]] = {}
    for rows in regions.values():
        rc = {r[0]: LATTICE_NAME.search(r[0]) for r in rows}
        if not all(rc.values()):
            continue
        lat0, lon0 = min(r[2] for r in rows), min(r[3] for r in rows)
        lat1, lon1 = max(r[4] for r in rows), max(r[5] for r in rows)
        n_rows = max(int(m.group(1)) for m in rc.values()) + 1
        n_cols = max(int(m.group(2)) for m in rc.values()) + 1
        dlat, dlon = (lat1 - lat0) / n_rows or CELL_PAD_DEG, (lon1 - lon0) / n_cols or CELL_PAD_DEG
        for cell, m in rc.items():
            r, c = int(m.group(1)), int(m.group(2))
            out[cell] = [[lat0 + r * dlat, lon0 + c * dlon], [lat0 + (r + 1) * dlat, lon0 + (c + 1) * dlon]]
    return out


def read_cells(conn, book: CellBook | None = None) -> list[dict[str, Any]]:
    """Every grid cell with its box, site counts and coverage (from the live poller's in-memory
    ``book`` when one is running in this process, else from the database)."""
    rows = conn.execute(CELL_GEOMETRY_SQL).fetchall()
    stock = book.coverages([r[0] for r in rows]) if book is not None else read_cell_stock(conn)
    lattice = lattice_bounds(rows)
    cells = []
    for cell, region, lat0, lon0, lat1, lon1, n, suspended in rows:
        st = stock.get(cell, {"materials": {}, "coverage": None})
        bounds = lattice.get(cell) or [[lat0 - CELL_PAD_DEG, lon0 - CELL_PAD_DEG], [lat1 + CELL_PAD_DEG, lon1 + CELL_PAD_DEG]]
        cells.append({"cell": cell, "region": region, "sites": n, "suspended": suspended, "bounds": bounds,
                      "coverage": st["coverage"], "materials": st["materials"]})
    return cells


def read_sites(conn) -> list[list]:
    """Compact rows for the map: [id, owner kind, tier, lat, lon, status, cell, last reading (epoch s)]."""
    return [list(r) for r in conn.execute(SITES_SQL).fetchall()]


SITE_COUNTS_SQL = """
SELECT count(*), count(*) FILTER (WHERE last IS NOT NULL AND last >= now() - make_interval(secs => %(stale)s)),
       count(*) FILTER (WHERE last < now() - make_interval(secs => %(stale)s)),
       count(*) FILTER (WHERE last IS NULL), count(*) FILTER (WHERE status = 'suspended')
FROM (SELECT s.site_id, min(s.status) AS status, max(l.ts) AS last
      FROM sites s LEFT JOIN stock_latest l ON l.site_id = s.site_id GROUP BY s.site_id) x
"""


def read_site_counts(conn, stale_after_s: float) -> dict[str, int]:
    """Sites reporting (fresh reading), stale (old reading), never reported, suspended: in SQL, so the
    overview's first render needs no site rows."""
    n, fresh, stale, never, suspended = conn.execute(SITE_COUNTS_SQL, {"stale": stale_after_s}).fetchone()
    return {"sites": n, "reporting": fresh, "stale": stale, "never": never, "suspended": suspended}


ALERT_COUNTS_SQL = "SELECT severity, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY 1"


def read_alert_counts(conn) -> dict[str, int]:
    """Open alerts by severity."""
    return alert_counts_from_rows(conn.execute(ALERT_COUNTS_SQL).fetchall())


def regions_from_rows(rows: list[tuple], now: datetime) -> list[dict[str, Any]]:
    """Each region's mode (normal / emergency) and, in emergency, the current period."""
    out = []
    for region, em_id, declared, periods, length_s, by in rows:
        entry: dict[str, Any] = {"region": region, "mode": "emergency" if em_id else "normal"}
        if em_id:
            elapsed = (now - declared).total_seconds()
            entry.update({"emergency_id": em_id, "declared_at": declared.isoformat(), "declared_by": by,
                          "periods": periods, "period_length_s": length_s,
                          "period": min(periods, max(1, int(elapsed // length_s) + 1))})
        out.append(entry)
    return out


def read_regions(conn) -> list[dict[str, Any]]:
    return regions_from_rows(conn.execute(REGIONS_SQL).fetchall(), datetime.now(timezone.utc))


def alert_counts_from_rows(rows: list[tuple]) -> dict[str, int]:
    counts = {"critical": 0, "warning": 0, "info": 0}
    for sev, n in rows:
        counts[sev] = int(n)
    return counts


def read_materials(conn) -> list[dict[str, str]]:
    return [{"material_id": m, "name": n, "unit": u} for m, n, u in
            conn.execute("SELECT material_id, name, unit FROM materials ORDER BY material_id")]


def read_overview(conn, stale_after_s: float, now: float | None = None, book: CellBook | None = None) -> dict[str, Any]:
    """Everything the overview page draws first, in one document (site rows come separately)."""
    now = time.time() if now is None else now
    return {"generated_at": now, "stale_after_s": stale_after_s, "cells": read_cells(conn, book),
            "counts": read_site_counts(conn, stale_after_s), "alerts": read_alert_counts(conn),
            "regions": read_regions(conn), "materials": read_materials(conn),
            "owner_kinds": list(OWNER_KINDS)}


SITE_HISTORY_SQL = """
SELECT material_id, extract(epoch FROM bucket)::float8, qty_last::float8
FROM readings_hourly
WHERE site_id = %(site)s AND bucket >= now() - make_interval(days => %(days)s)
ORDER BY material_id, bucket
"""

SITE_LATEST_SQL = """
SELECT l.material_id, extract(epoch FROM l.ts)::float8, l.qty::float8, l.unit, m.unit
FROM stock_latest l JOIN materials m USING (material_id) WHERE l.site_id = %(site)s ORDER BY 1
"""


def read_site_history(conn, site_id: str, days: int) -> dict[str, Any]:
    """Per material, the site's stock at the end of each hour (last reading in the hour), ending with
    its latest reading so the chart shows a reading as soon as it is stored."""
    series: dict[str, dict[str, Any]] = {}
    for material, at, qty in conn.execute(SITE_HISTORY_SQL, {"site": site_id, "days": days}).fetchall():
        series.setdefault(material, {"t": [], "qty": []})
        series[material]["t"].append(at)
        series[material]["qty"].append(qty)
    units = {}
    for material, at, qty, unit, catalogue_unit in conn.execute(SITE_LATEST_SQL, {"site": site_id}).fetchall():
        s = series.setdefault(material, {"t": [], "qty": []})
        units[material] = catalogue_unit
        if not s["t"] or at > s["t"][-1]:
            s["t"].append(at)
            s["qty"].append(qty)
    return {"site_id": site_id, "days": days, "series": series, "units": units}
