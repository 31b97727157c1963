"""Province-size plans with delivery limits or a minimum lot (the anytime planner's path above
``PROVINCE_COLUMNS`` columns, where the full model is not built).

Building and compiling the full model with its arc binaries took minutes at province size (load
average 11-16) and HiGHS overran its limit on it, so this path plans by material on delivery arcs
fixed in advance: with the same arcs open for every material, each centre's delivery limit holds
whatever each material ships, and each material keeps the minimum lot on its own.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from optimizer.anytime import CHECK_MARGIN, _flows, top_arcs
from optimizer.bounds import stock_fleet_relaxation
from optimizer.decompose import (_greedy_flows, aggregate_relaxation, material_budgets, material_order,
                                 material_subproblems)
from optimizer.index import Index, numbers_of, structure_of
from optimizer.model import Planner
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario, load_scenario
from optimizer.summary import summarise
from optimizer.urgency import urgency as compute_urgency
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
    res = plan_on_fixed_arcs(sc, top_arcs(sc, flow_value, 0), time_limit_s=run.left(budget_s) * (1 - CHECK_MARGIN),
                             gap=run.gap, max_materials=work.materials,
                             highs_options=work.highs_options() | {"presolve": "on"}, progress=run.progress)
    run.offer(res, f"decomposition by material on the fleet LP's arcs ({res.summary.get('materials_solved', 0)} "
                   f"of {len(sc.materials)} materials solved)")
    if work.rounds >= 2 and not run.proven() and not run.out_of_time(budget_s, "stock-fleet bound (sites merged)"):
        info["stock_fleet_bound"], value = stock_fleet_relaxation(sc, time_limit_s=run.left(budget_s),
                                                                  merge_sites=True, solver=MERGED_LP_SOLVER)
        if value is None and run.left(budget_s) <= 0.05:
            run.clock_stops.append("stock-fleet bound (sites merged)")
        run.raise_bound(info["stock_fleet_bound"], "stock-fleet bound (sites merged)")


@dataclasses.dataclass
class _Merged:
    """The merged plan of the decomposition as arrays, and how each material was planned."""

    shipped: np.ndarray  # [supply arcs, M, T] units
    delivered: np.ndarray  # [delivery arcs, M, T] units
    statuses: dict[str, str] = dataclasses.field(default_factory=dict)  # material -> how it was planned
    by_clock: bool = False  # the time limit (not the work limits) stopped a solve or the loop
    stopped: str | None = None  # why not every material was solved


def plan_on_fixed_arcs(sc: Scenario, open_arcs: np.ndarray, *, time_limit_s: float, gap: float,
                       max_materials: int | None, highs_options: dict[str, Any],
                       progress: Callable[[str], None] = lambda s: None) -> PlanResult:
    """The decomposition by material on fixed delivery arcs (``open_arcs``: [delivery arcs, periods],
    at most each centre's limit open per period), most at stake first, ``max_materials`` solved (the
    rest on their greedy plan within their share). Two couplings are passed on from material to
    material instead of split once:

    - the minimum lot: once every open arc carries the lot in the materials planned so far, the later
      materials plan WITHOUT a lot of their own (each arc they use already carries it, and what they add
      only raises it). Each material keeping a lot of its own lost the high-theta materials whose
      remaining demand per rescue centre is small: province seed 1, F = 3, lot 20, all 20 materials
      95,488,970 with the lot per material, 95,379,558 with it passed on, each such solve 0.3 s
      instead of 0.7 s (one run, load average 2.5);
    - the budget: what a material leaves of its share goes to the next one (the total stays within).
    """
    t_all = time.perf_counter()
    st, n = structure_of(sc), numbers_of(sc)
    kept = np.flatnonzero(open_arcs.any(axis=1))  # arcs open in some period: a smaller model to compile
    bound, spend = aggregate_relaxation(sc)
    subs = material_subproblems(sc, material_budgets(sc, spend), keep_limits=True,
                                delivery_arcs=[st.delivery_arcs[i] for i in kept])
    merged = _Merged(np.zeros((len(st.supply_arcs), len(st.materials), st.periods)),
                     np.zeros((len(st.delivery_arcs), len(st.materials), st.periods)))
    _solve_in_order(sc, subs, kept, open_arcs[kept], merged, t_all, time_limit_s, gap, max_materials,
                    highs_options, progress)
    return _decomposition_result(sc, merged, bound, gap, time.perf_counter() - t_all)


def _solve_in_order(sc: Scenario, subs: list[dict[str, Any]], kept: np.ndarray, open_kept: np.ndarray,
                    merged: _Merged, t_all: float, time_limit_s: float, gap: float, max_materials: int | None,
                    highs_options: dict[str, Any], progress: Callable[[str], None]) -> None:
    """Plan the materials most at stake first into ``merged`` (see ``plan_on_fixed_arcs``)."""
    st, n = structure_of(sc), numbers_of(sc)
    planners: dict[bool, Planner] = {}
    carry = 0.0  # budget the materials planned so far left unspent
    order = material_order(sc)
    for i, mi in enumerate(order):
        m = st.materials[mi]
        lot_passed_on = n.min_lot is not None and bool(np.all(merged.delivered[kept].sum(axis=1)[open_kept]
                                                               >= n.min_lot - 1e-9))
        sub = dict(subs[mi])
        if lot_passed_on:
            sub.pop("min_lot", None)
        if "budget" in sub:
            sub["budget"] = float(np.floor((sub["budget"] + carry) * 100) / 100)
        scm = load_scenario(sub)
        remaining = time_limit_s - (time.perf_counter() - t_all)
        work_done = max_materials is not None and i >= max_materials
        if work_done or remaining <= 0:
            merged.by_clock = merged.by_clock or not work_done
            merged.stopped = merged.stopped or (f"{'work' if work_done else 'time'} limit reached after {i} of "
                                                f"{len(st.materials)} materials")
            carry += _add_greedy(sc, scm, mi, kept, open_kept, merged)
            continue
        progress(f"material {i + 1}/{len(st.materials)} ({m}){', lot passed on' if lot_passed_on else ''}")
        if lot_passed_on not in planners:  # one compiled model per structure (with / without the lot)
            planners[lot_passed_on] = Planner(scm)
        planner = planners[lot_passed_on]
        res = planner.solve(scm, time_limit_s=remaining, gap=gap / 4, prefer_fewer_arcs=False,
                            highs_options={"simplex_strategy": 4, **highs_options}, open_arcs=open_kept)
        merged.by_clock = merged.by_clock or res.summary.get("solver_status") == "time_limit"
        if not res.has_plan:
            merged.stopped = merged.stopped or f"material {m} ended {res.status.value}: {res.message}"
            carry += _add_greedy(sc, scm, mi, kept, open_kept, merged)
            continue
        merged.statuses[m] = res.status.value + (" (lot passed on)" if lot_passed_on else "")
        carry += _add_flows(sc, mi, res.shipments_in, res.deliveries, merged, scm.budget)


def _add_flows(sc: Scenario, mi: int, shipments: tuple[Flow, ...] | list[Flow], deliveries: tuple[Flow, ...] | list[Flow],
               merged: _Merged, budget: float | None) -> float:
    """Add one material's flows to the merged plan; returns the money of its share it left unspent."""
    st, n = structure_of(sc), numbers_of(sc)
    spos = {a: i for i, a in enumerate(st.supply_arcs)}
    dpos = {a: i for i, a in enumerate(st.delivery_arcs)}
    wpos = {w: i for i, w in enumerate(st.supply_sites)}
    spent = 0.0
    for f in shipments:
        merged.shipped[spos[(f.origin, f.destination)], mi, f.period - 1] += f.qty
        spent += f.qty * n.price[wpos[f.origin], mi, f.period - 1]
    for f in deliveries:
        merged.delivered[dpos[(f.origin, f.destination)], mi, f.period - 1] += f.qty
    return 0.0 if budget is None else max(float(budget) - spent, 0.0)


def _add_greedy(sc: Scenario, sub: Scenario, mi: int, kept: np.ndarray, open_kept: np.ndarray, merged: _Merged) -> float:
    """A material not solved follows its greedy plan within its share, on the open arcs."""
    m = structure_of(sc).materials[mi]
    ship, dels = _greedy_flows(sub, m, open_kept)
    merged.statuses[m] = "greedy"
    return _add_flows(sc, mi, ship, dels, merged, sub.budget)


def _decomposition_result(sc: Scenario, merged: _Merged, bound: float, gap: float, seconds: float) -> PlanResult:
    """The merged plan as a PlanResult, its gap against the aggregate bound."""
    st, n = structure_of(sc), numbers_of(sc)
    ix = Index(st)
    got = np.zeros_like(n.demand)
    np.add.at(got, ix.d_k, merged.delivered)
    short = np.maximum(n.demand - got, 0.0)
    objective = float(np.einsum("kmt,m->", short, n.theta))
    bound = min(bound, objective)
    gap_v = 0.0 if objective <= 1e-9 else (objective - bound) / objective
    names = lambda ids, at: np.asarray(ids, dtype=object)[at]  # noqa: E731
    ship = _flows(merged.shipped, names(st.supply_sites, ix.s_w), names(st.distribution_centres, ix.s_j), st.materials)
    dels = _flows(merged.delivered, names(st.distribution_centres, ix.d_j), names(st.rescue_centres, ix.d_k),
                  st.materials)
    k_i, m_i, t_i = np.nonzero(short > 1e-9)
    shortages = tuple(map(Shortage, names(st.rescue_centres, k_i).tolist(), names(st.materials, m_i).tolist(),
                          (t_i + 1).tolist(), short[k_i, m_i, t_i].astype(float).tolist()))
    spent = float(np.einsum("smt,smt->", merged.shipped, n.price[ix.s_w]))
    greedy = [m for m, s in merged.statuses.items() if s == "greedy"]
    summary = summarise(sc, n, short, spent=spent) | {
        "method": f"decomposition by material ({len(st.materials)} single-material MILPs, delivery arcs fixed, "
                  "lot and budget passed on) + aggregate LP bound",
        "material_statuses": merged.statuses, "materials_solved": len(merged.statuses) - len(greedy),
        "materials_greedy": greedy, "stopped_by_clock": merged.by_clock}
    status = SolveStatus.OPTIMAL if gap_v <= gap and merged.stopped is None else SolveStatus.FEASIBLE
    return PlanResult(status=status, objective=objective, bound=bound, gap=gap_v, solve_seconds=seconds,
                      build_seconds=0.0, compile_seconds=0.0, urgency=compute_urgency(sc.materials, sc.theta),
                      shipments_in=ship, deliveries=dels, shortage=shortages, summary=summary,
                      message=merged.stopped or "every material planned on the fixed arcs")
