"""Province-size plans with delivery limits or a minimum lot (the anytime planner's path above
``PROVINCE_COLUMNS`` columns, where the full model is not built).

Building and compiling the full model with its arc binaries took minutes at province size (load
average 11-16) and HiGHS overran its limit on it, so this path plans by material on delivery arcs
fixed in advance: with the same arcs open for every material, each centre's delivery limit holds
whatever each material ships, and each material keeps the minimum lot on its own.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from optimizer.anytime import CHECK_MARGIN, top_arcs
from optimizer.bounds import stock_fleet_relaxation
from optimizer.decompose import plan_by_material
from optimizer.scenario import Scenario
from optimizer.work import DECOMPOSITION_SHARE, WorkLimits

if TYPE_CHECKING:
    from optimizer.anytime import _Anytime

#: HiGHS's LP method for the stock-fleet bound with merged sites at province size
MERGED_LP_SOLVER = "ipm"
#: Compiling the single-material model with its arc binaries, only the arcs open in some period kept
#: (2.7 s; 20-36 s with all 1,200 delivery arcs), the seconds one material's MILP on the fixed arcs
#: takes (all 20 in 37 s after the compile at load average 7.4, 2026-12-01 11:31 UTC; at load 9.8 the
#: clock stopped a 60 s budget after 13, so 3 s each: 13 materials in 60 s, all 20 from 85 s), the
#: nodes each may explore, and the budget from which the stock-fleet bound with merged sites is planned
#: (its LP by the interior point method took 87.5 s at load 9 and raised the bound by 0.15 % only).
LIMITED_COMPILE_S = 5.0
SECONDS_PER_LIMITED_MATERIAL = 3.0
LIMITED_MATERIAL_NODES = 200
MERGED_STOCK_FLEET_BUDGET_S = 150.0


def province_limited_work(budget: float, materials: int) -> WorkLimits:
    """Province size with limits: the decomposition on the fleet LP's arcs (round 1) solves as many
    materials as fit after compiling its model, then (round 2) the stock-fleet bound with merged sites
    if the budget leaves room for it; each material's MILP gets ``LIMITED_MATERIAL_NODES`` nodes."""
    usable = budget * DECOMPOSITION_SHARE - LIMITED_COMPILE_S
    solved = min(materials, max(0, int(math.floor(usable / SECONDS_PER_LIMITED_MATERIAL))))
    rounds = 0 if solved == 0 else 1 + int(budget >= MERGED_STOCK_FLEET_BUDGET_S)
    return WorkLimits(rounds=rounds, mip_nodes=LIMITED_MATERIAL_NODES, materials=solved)


def improve_province_limited(run: "_Anytime", sc: Scenario, flow_value: np.ndarray | None, budget_s: float,
                             work: WorkLimits, info: dict[str, Any]) -> None:
    """Round 1: the decomposition by material on the fleet LP's arcs (each centre's limit's worth per
    period, fixed for every material, so the merged plan keeps the delivery limits; each material keeps
    the minimum lot on its own), ``work.materials`` of them solved, most at stake first, the others on
    their greedy plan. Province seed 1, F = 3, lot 20: 100.7 M (the greedy plans) -> 96.2 M with 12 of
    20 materials solved. Round 2: the stock-fleet bound with the supply sites merged per set of centres
    they ship to (``optimizer.bounds``)."""
    if work.rounds < 1 or flow_value is None or run.out_of_time(budget_s, "decomposition on the fleet LP's arcs"):
        return
    res = plan_by_material(sc, time_limit_s=run.left(budget_s) * (1 - CHECK_MARGIN), gap=run.gap,
                           greedy_fallback=True, max_materials=work.materials, open_arcs=top_arcs(sc, flow_value, 0),
                           highs_options=work.highs_options() | {"presolve": "on"})
    run.offer(res, f"decomposition by material on the fleet LP's arcs ({res.summary.get('materials_solved', 0)} "
                   f"of {len(sc.materials)} materials solved)")
    if work.rounds >= 2 and not run.proven() and not run.out_of_time(budget_s, "stock-fleet bound (sites merged)"):
        info["stock_fleet_bound"], value = stock_fleet_relaxation(sc, time_limit_s=run.left(budget_s),
                                                                  merge_sites=True, solver=MERGED_LP_SOLVER)
        if value is None and run.left(budget_s) <= 0.05:
            run.clock_stops.append("stock-fleet bound (sites merged)")
        run.raise_bound(info["stock_fleet_bound"], "stock-fleet bound (sites merged)")
