"""Normal times: is the reserve fit for the next emergency, per grid cell and material?

Target per (cell, material) = ``days`` x the expected daily demand of a planning scenario (the
scenario pack's demand per period, summed over its rescue centres and averaged over its periods,
one period taken as one day, converted to the registry's unit). The scenario gives demand per
rescue centre, not per cell, so the region's demand is spread over its grid cells in proportion
to the number of registered sites in each (a stated population proxy, not a census).

Covered = what a plan could count on today: sum over the cell's active sites of
min(reported, committed) x trust (the dispatcher's rule without reservations).

Suggested rebalancing / procurement, a small LP solved with CVXPY (the optimizer's library):

    minimise   sum_i fee_i x days x raise_i  +  procurement_price_m x buy_c
    subject to covered_c + sum_{i in c} raise_i + buy_c >= target_c      (every cell and material)
               0 <= raise_i <= headroom_i = max(0, reported_i x trust_i - committed_i)
               buy_c >= 0

``raise_i``: committed stock an owner could be asked to add (it holds it already, uncommitted),
paid at its contract's standby fee; ``buy_c``: what no owner holds and must be procured, at the
scenario's price (x 100 minor units per currency unit) x ``procurement_factor``. Money in minor
currency units (the contracts' unit); quantities in each material's unit.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from vreserve.units import conversion_factor

#: Minor units per scenario price unit (the packs price in whole currency units).
MINOR_PER_PRICE_UNIT = 100


@dataclass(frozen=True)
class SiteStock:
    site_id: str
    owner_id: str
    grid_cell: str
    material_id: str
    reported: float
    committed: float
    trust: float
    fee_minor_per_unit_day: float

    @property
    def covered(self) -> float:
        return min(self.reported, self.committed) * self.trust

    @property
    def headroom(self) -> float:
        return max(0.0, self.reported * self.trust - self.committed)


@dataclass
class CellBalance:
    grid_cell: str
    material_id: str
    unit: str
    target: float
    covered: float
    daily_demand: float
    raises: list[dict] = field(default_factory=list)   # {"site_id", "owner_id", "qty", "fee_minor_per_day"}
    procure: float = 0.0

    @property
    def coverage_days(self) -> float:
        return self.covered / self.daily_demand if self.daily_demand > 0 else float("inf")

    @property
    def under_target(self) -> bool:
        return self.covered + 1e-9 < self.target

    def to_dict(self) -> dict:
        return {"grid_cell": self.grid_cell, "material": self.material_id, "unit": self.unit,
                "target": round(self.target, 3), "covered": round(self.covered, 3),
                "coverage_days": None if self.daily_demand <= 0 else round(self.coverage_days, 2),
                "under_target": self.under_target, "raises": self.raises, "procure": round(self.procure, 3)}


def daily_demand(base: dict) -> dict[str, float]:
    """Region's expected demand per day and material (mean over the scenario's periods)."""
    periods = int(base["periods"])
    out: dict[str, float] = {}
    for rc in base["rescue_centres"]:
        for m, series in rc["demand"].items():
            values = list(series) if isinstance(series, (list, tuple)) else [float(series)] * periods
            out[m] = out.get(m, 0.0) + sum(float(v) for v in values[:periods]) / periods
    return out


def targets(per_day: dict[str, float], sites_per_cell: dict[str, int], days: float) -> dict[tuple[str, str], float]:
    total = sum(sites_per_cell.values()) or 1
    return {(c, m): days * d * n / total for c, n in sites_per_cell.items() for m, d in per_day.items()}


def solve(stocks: list[SiteStock], target: dict[tuple[str, str], float], days: float,
          procurement_minor: dict[str, float]) -> dict[tuple[str, str], tuple[list[tuple[SiteStock, float]], float]]:
    """The LP: per (cell, material) the raises chosen and the units to procure."""
    import cvxpy as cp  # loaded when a balance is solved, not when the API or the CLI starts
    cells = sorted(target)
    idx = {k: i for i, k in enumerate(cells)}
    cand = [s for s in stocks if s.headroom > 1e-9 and (s.grid_cell, s.material_id) in idx]
    covered = np.zeros(len(cells))
    for s in stocks:
        if (s.grid_cell, s.material_id) in idx:
            covered[idx[(s.grid_cell, s.material_id)]] += s.covered
    need = np.array([target[k] for k in cells])
    buy = cp.Variable(len(cells), nonneg=True)
    price_buy = np.array([procurement_minor.get(m, 0.0) for _c, m in cells])
    cost = price_buy @ buy
    constraints = []
    if cand:
        x = cp.Variable(len(cand), nonneg=True)
        A = np.zeros((len(cells), len(cand)))
        for j, s in enumerate(cand):
            A[idx[(s.grid_cell, s.material_id)], j] = 1.0
        cost = cost + np.array([s.fee_minor_per_unit_day * days for s in cand]) @ x
        constraints += [x <= np.array([s.headroom for s in cand]), covered + A @ x + buy >= need]
    else:
        constraints += [covered + buy >= need]
    problem = cp.Problem(cp.Minimize(cost), constraints)
    problem.solve()
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"the balance LP ended {problem.status}")
    out: dict[tuple[str, str], tuple[list[tuple[SiteStock, float]], float]] = {k: ([], 0.0) for k in cells}
    raised = x.value if cand else []
    for j, s in enumerate(cand):
        q = float(raised[j])
        if q > 1e-3:  # solver noise below a thousandth of a unit is no suggestion
            out[(s.grid_cell, s.material_id)][0].append((s, q))
    for k in cells:
        out[k] = (out[k][0], max(0.0, float(buy.value[idx[k]])))
    return out


def balance(stocks: list[SiteStock], units: dict[str, str], sites_per_cell: dict[str, int], base: dict,
            days: float, procurement_factor: float = 2.0) -> list[CellBalance]:
    """Per (cell, material): target, covered, coverage days, suggested raises and procurement."""
    per_day = daily_demand(base)
    target = targets(per_day, sites_per_cell, days)
    price = {m["id"]: float(m.get("price", 0.0)) * MINOR_PER_PRICE_UNIT * procurement_factor for m in base["materials"]}
    plan = solve(stocks, target, days, price)
    total = sum(sites_per_cell.values()) or 1
    rows = []
    for (cell, m), tgt in sorted(target.items()):
        covered = sum(s.covered for s in stocks if s.grid_cell == cell and s.material_id == m)
        raises, buy = plan[(cell, m)]
        rows.append(CellBalance(
            cell, m, units.get(m, "units"), tgt, covered, per_day[m] * sites_per_cell[cell] / total,
            [{"site_id": s.site_id, "owner_id": s.owner_id, "qty": round(q, 3),
              "fee_minor_per_day": round(s.fee_minor_per_unit_day * q, 2)} for s, q in raises],
            buy))
    return rows


# ----------------------------------------------------------------------------------- SQL facts
STOCK_SQL = """
SELECT s.site_id, s.owner_id, s.grid_cell, sl.material_id, sl.qty::float8, c.committed, s.trust, c.fee
FROM sites s
JOIN stock_latest sl ON sl.site_id = s.site_id
JOIN (SELECT site_id, material_id, sum(committed_qty)::float8 AS committed,
             max(standby_fee_minor_per_unit_day)::float8 AS fee
      FROM contracts WHERE valid_from <= current_date AND valid_to >= current_date
      GROUP BY site_id, material_id) c ON c.site_id = s.site_id AND c.material_id = sl.material_id
WHERE s.region = %(region)s AND s.status = 'active'
"""


def region_facts(conn, region: str) -> tuple[list[SiteStock], dict[str, int], dict[str, tuple[float, float]],
                                              dict[str, str]]:
    """Stock per site and material, sites per cell, each cell's mean position, material units."""
    stocks = [SiteStock(*r) for r in conn.execute(STOCK_SQL, {"region": region}).fetchall()]
    cells = conn.execute("SELECT grid_cell, count(*), avg(lat), avg(lon) FROM sites WHERE region = %s"
                         " GROUP BY grid_cell", (region,)).fetchall()
    units = dict(conn.execute("SELECT material_id, unit FROM materials").fetchall())
    return stocks, {c: n for c, n, _a, _o in cells}, {c: (lat, lon) for c, _n, lat, lon in cells}, units


def in_units(base: dict, units: dict[str, str]) -> dict:
    """The scenario's demand and prices in the registry's units (an unknown factor is an error)."""
    out = copy.deepcopy(base)
    for mat in out["materials"]:
        to = units.get(mat["id"])
        frm = str(mat.get("unit", to))
        if to is None or frm == to:
            continue
        f = conversion_factor(frm, to)
        if f is None:
            raise ValueError(f"{mat['id']}: the scenario counts in {frm!r}, the registry in {to!r}; no conversion known")
        mat["price"] = float(mat.get("price", 0.0)) / f
        for rc in out["rescue_centres"]:
            series = rc["demand"].get(mat["id"])
            if series is not None:
                rc["demand"][mat["id"]] = ([float(v) * f for v in series] if isinstance(series, (list, tuple))
                                           else float(series) * f)
    return out


# --------------------------------------------------------------------- one region, end to end
class BalanceError(ValueError):
    """The balance cannot be computed as asked: no site in the region, or a scenario that does not
    load or counts in a unit the registry cannot be converted to (the message says which)."""


@dataclass(frozen=True)
class RegionBalance:
    """A region's balance: every (cell, material) row, the cells' site counts and mean positions."""

    region: str
    scenario: str
    days: float
    rows: list[CellBalance]
    sites_per_cell: dict[str, int]
    where: dict[str, tuple[float, float]]

    @property
    def under(self) -> int:
        return sum(1 for r in self.rows if r.under_target)

    def map_document(self) -> dict:
        """Map-ready: each cell with its position and its materials' figures (what `--json` writes)."""
        return {"region": self.region, "scenario": self.scenario, "days": self.days, "money": "minor currency units",
                "cells": [{"grid_cell": c, "lat": self.where[c][0], "lon": self.where[c][1],
                           "materials": [r.to_dict() for r in self.rows if r.grid_cell == c]}
                          for c in sorted(self.sites_per_cell)]}


def region_balance(conn, region: str, scenario, days: float, procurement_factor: float = 2.0) -> RegionBalance:
    """The balance of ``region`` against ``days`` of ``scenario``'s demand (a pack name, a file or a
    loaded scenario): the one computation behind `vreserve reserve balance` and
    ``GET /api/v1/reserve/balance``. Read-only: it suggests, it changes nothing."""
    from vreserve.scenario import load_scenario

    stocks, per_cell, where, units = region_facts(conn, region)
    if not per_cell:
        raise BalanceError(f"no site in region {region!r}")
    try:
        base = in_units(load_scenario(scenario).to_dict(), units)
    except (ValueError, OSError) as exc:
        raise BalanceError(str(exc)) from None
    rows = balance(stocks, units, per_cell, base, days, procurement_factor)
    return RegionBalance(region, str(scenario), days, rows, per_cell, where)
