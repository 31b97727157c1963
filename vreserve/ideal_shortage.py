"""The ideal shortage per material: of a declaration before it is published (the console's
confirmation) and of a declared emergency (the console's figures and ``GET /emergencies/{id}/plans``).
Shared in vreserve/ so the API and the console compute it with one definition.

Same definition as the emergency report (dispatcher/report.py): the share of the horizon's demand
that no plan could cover even if every unit were used, i.e.
``max(0, demand - centres' usable stock - live supply available now) / demand``, per material, in
the registry's unit. Live supply follows the planner's rule (dispatcher/snapshot.py):
``floor(max(0, min(reported, committed) x trust - reserved))`` over the region's active sites with
a contract valid today. Read-only: nothing is published.

Only demand packs by name are accepted here (never a server path: a request must not make the
server read files of its choosing).
"""
from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from vreserve.scenario import ScenarioError, load_scenario
from vreserve.units import conversion_factor

PACK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: An uploaded demand file's id (POST /api/v1/demand-files keeps it as <state dir>/api-demand/<id>.yaml).
DEMAND_FILE_ID = re.compile(r"^DF-[0-9a-f]{16}$")

LIVE_SUPPLY_SQL = """
WITH committed AS (
    SELECT site_id, material_id, sum(committed_qty)::float8 AS committed FROM contracts
    WHERE valid_from <= current_date AND valid_to >= current_date GROUP BY 1, 2
), reserved AS (
    SELECT origin AS site_id, material_id, sum(qty)::float8 AS qty FROM dispatch_orders
    WHERE leg = 'supply' AND status IN ('open', 'accepted', 'in_transit') GROUP BY 1, 2
)
SELECT l.material_id,
       sum(floor(greatest(0, least(l.qty::float8, c.committed) * s.trust - COALESCE(r.qty, 0)) + 1e-9))::float8,
       count(DISTINCT s.site_id)
FROM sites s
JOIN stock_latest l ON l.site_id = s.site_id
JOIN committed c ON c.site_id = s.site_id AND c.material_id = l.material_id
LEFT JOIN reserved r ON r.site_id = s.site_id AND r.material_id = l.material_id
WHERE s.region = %(region)s AND s.status = 'active'
GROUP BY l.material_id
"""


class PreviewError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def horizon_figures(scenario: dict, periods: int, scale: float) -> dict[str, dict[str, float]]:
    """Per material: demand over the first ``periods`` periods (scaled) and the centres' usable stock."""
    out: dict[str, dict[str, float]] = {}
    for mat in scenario["materials"]:
        out[mat["id"]] = {"demand": 0.0, "centres_usable": 0.0, "unit": mat.get("unit", "units")}
    for rc in scenario["rescue_centres"]:
        for m, v in (rc.get("demand") or {}).items():
            series = list(v) if isinstance(v, (list, tuple)) else [float(v)] * scenario["periods"]
            out[m]["demand"] += sum(float(x) for x in series[:periods]) * scale
    for dc in scenario["distribution_centres"]:
        for m in out:
            out[m]["centres_usable"] += max(0.0, float((dc.get("initial") or {}).get(m, 0))
                                            - float((dc.get("safety_stock") or {}).get(m, 0)))
    return out


def to_registry_units(figures: dict[str, dict[str, Any]], registry_units: dict[str, str]) -> list[str]:
    """Convert demand and centre stock to the registry's unit of each material, in place; notes."""
    notes = []
    for m, f in figures.items():
        to = registry_units.get(m)
        if to is None or to == f["unit"]:
            continue
        factor = conversion_factor(f["unit"], to)
        if factor is None:
            notes.append(f"{m}: the pack counts in {f['unit']!r}, the registry in {to!r}; taken as the same unit")
        else:
            f["demand"] *= factor
            f["centres_usable"] *= factor
        f["unit"] = to
    return notes


def ideal_rates(figures: dict[str, dict[str, Any]], live: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Add live supply, ideal shortage and its rate to each material's figures."""
    out = {}
    for m, f in figures.items():
        supply = live.get(m, 0.0)
        short = max(0.0, f["demand"] - f["centres_usable"] - supply)
        out[m] = {**f, "live_available": supply, "ideal_shortage": short,
                  "ideal_shortage_rate": short / f["demand"] if f["demand"] > 0 else 0.0}
    return out


def load_demand(source: str, demand_dir: Path, periods: int) -> dict:
    """The demand pack or uploaded file as a scenario dict; never a path the caller chose."""
    if DEMAND_FILE_ID.match(source):
        path = demand_dir / f"{source}.yaml"
        if not path.exists():
            raise PreviewError("demand_file_not_found", f"no uploaded demand file {source}")
        target: str = str(path)
    elif PACK_NAME.match(source):
        target = source
    else:
        raise PreviewError("bad_demand_source", "demand source must be a pack name or an uploaded file id")
    try:
        scenario = _scenario_dict(target)
    except ScenarioError as exc:
        raise PreviewError("bad_demand_source", f"demand source {source!r}: {exc}".replace(target, source)) from None
    if scenario["periods"] < periods:
        raise PreviewError("bad_demand_source", f"{source!r} has {scenario['periods']} periods, not {periods}")
    return copy.deepcopy(scenario)


@lru_cache(maxsize=64)
def _scenario_dict(target: str) -> dict:
    """A pack or uploaded file, parsed once per process: packs ship with the code and uploaded
    files are named by their content, so neither changes under a name (parsing the wuhan pack
    took ~40 ms, on every plans read)."""
    return load_scenario(target).to_dict()


def ideal_shortage_preview(conn, region: str, source: str, periods: int, scale: float,
                           demand_dir: Path) -> dict[str, Any]:
    """The confirmation's figures for a declaration of ``source`` over ``periods`` in ``region``."""
    if not conn.execute("SELECT 1 FROM sites WHERE region = %s LIMIT 1", (region,)).fetchone():
        raise PreviewError("unknown_region", f"unknown region {region!r}: no site of the registry is in it")
    figures = horizon_figures(load_demand(source, demand_dir, periods), periods, scale)
    units = dict(conn.execute("SELECT material_id, unit FROM materials").fetchall())
    notes = to_registry_units(figures, units)
    live = {}
    sites = 0
    for m, qty, n in conn.execute(LIVE_SUPPLY_SQL, {"region": region}).fetchall():
        live[m] = qty
        sites = max(sites, n)
    return {"region": region, "demand_source": source, "periods": periods, "demand_scale": scale,
            "materials": ideal_rates(figures, live), "notes": notes, "supplying_sites": sites}


def emergency_ideal(conn, emergency_id: str, demand_dir: Path) -> dict[str, Any] | None:
    """The ideal shortage of a declared emergency, as its report defines it: live supply = what
    the first plan saw available (None until the first plan exists, or if its demand is gone)."""
    row = conn.execute("SELECT region, periods, demand_scale, demand_source FROM emergencies WHERE emergency_id = %s",
                       (emergency_id,)).fetchone()
    if row is None:
        raise PreviewError("emergency_not_found", f"no emergency {emergency_id!r}")
    region, periods, scale, source = row
    first = conn.execute("SELECT summary FROM plans WHERE emergency_id = %s ORDER BY period LIMIT 1",
                         (emergency_id,)).fetchone()
    if first is None:
        return None
    summary = first[0] if isinstance(first[0], dict) else json.loads(first[0])
    name = Path(source).stem if Path(source).suffix else source
    try:
        figures = horizon_figures(load_demand(name, demand_dir, periods), periods, scale)
    except PreviewError:
        return None
    units = dict(conn.execute("SELECT material_id, unit FROM materials").fetchall())
    notes = to_registry_units(figures, units)
    live = {m: float((f or {}).get("available", 0.0)) for m, f in (summary.get("materials") or {}).items()}
    return {"emergency_id": emergency_id, "region": region, "materials": ideal_rates(figures, live), "notes": notes}
