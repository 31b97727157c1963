"""Province-size plans with delivery limits or a minimum lot (the anytime planner's path above
``PROVINCE_COLUMNS`` columns, where the full model is not built).

Building and compiling the full model with its arc binaries took minutes at province size (load
average 11-16) and HiGHS overran its limit on it. So, in rounds (``province_limited_work``):

1. the decomposition by material on delivery arcs fixed to the fleet LP's choice
   (``plan_on_fixed_arcs``): with the same arcs open for every material, each centre's delivery limit
   holds whatever each material ships; the minimum lot and the budget are passed on from material to
   material;
2. the stock-fleet bound with the supply sites merged (``merged_stock_fleet_bound``): the fleet LP
   with the centres' stock flow, by HiGHS's interior point method without crossover, in a thread
   beside round 1 (the plan does not depend on it);
3. while the plan is not yet proven within the gap against the bounds known without round 2's thread:
   joint neighbourhoods of two centres (``optimizer.centre_neighbourhood.improve_joint``): the centre
   where the plan delivers least against the fleet LP and the neighbour whose own neighbourhood
   promises most, re-chosen together with the stock flow; it runs beside round 2's thread (HiGHS
   releases the GIL), so the plan never depends on when that thread ends;
4. the same way, fix-and-optimize per distribution centre (``improve_centres``), from a larger budget.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import highspy as hp
import numpy as np
import scipy.sparse as sp

from optimizer.anytime import CHECK_MARGIN, _flows, top_arcs
from optimizer.bounds import _stock_fleet_rows, _supply_merged
from optimizer.centre_neighbourhood import improve_centres, improve_joint, lp_gains, neighbours
from optimizer.decompose import (_greedy_flows, aggregate_relaxation, material_budgets, material_order,
                                 material_subproblems)
from optimizer.index import Index, Numbers, numbers_of, structure_of
from optimizer.model import Planner
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario, load_scenario
from optimizer.summary import summarise
from optimizer.urgency import urgency as compute_urgency
from optimizer.work import DECOMPOSITION_SHARE, WorkLimits

if TYPE_CHECKING:
    from optimizer.anytime import _Anytime

#: Compiling the single-material model with its arc binaries (only the arcs open in some period kept)
#: and the seconds one material's MILP on the fixed arcs takes: with the lot passed on, all 20
#: materials of province seed 1 in 7.8 s including the compile (0.25-0.4 s each once the lot is passed
#: on, 0.7-1.0 s before; load average 2-2.5, 2026-12-01 13:20 UTC); with margins for a loaded machine
#: (a material with a lot of its own took 3 s at load 9.8). The compile's 5 s keeps the dispatcher's
#: 7.5 s budget on the greedy plans, as before.
LIMITED_COMPILE_S = 5.0
SECONDS_PER_LIMITED_MATERIAL = 1.0
LIMITED_MATERIAL_NODES = 200
#: The budget from which the merged stock-fleet bound (round 2) is planned: its LP by the interior point
#: method without crossover took 24-26 s at load average 1-2 (34 s with crossover at load 4, 87.5 s at
#: load 9; 2026-12-01 13:25-13:35 UTC). If the clock stops it, only the bound is lost (the plan does not
#: depend on it) and the stage is named in ``clock_stops``.
MERGED_STOCK_FLEET_BUDGET_S = 60.0
#: The budget from which the joint neighbourhoods (round 3) are planned, and how many pairs
#: (``_pairs_round``): each pair's MILP stops at its own ``JOINT_REL_GAP`` or the node limit (work
#: limits). Province seed 3 on the decomposition's plan: the pair (34, 29) gains 697,708 in 9.1 s in
#: two steps (``improve_joint``; load average 1-2, 2026-12-01 20:03 UTC); ranking a centre's
#: neighbours (a dozen small LPs)
#: takes a few seconds, where ranking all 40 centres took 11-22 s.
JOINT_BUDGET_S = 60.0
JOINT_PAIRS = 2
#: The budget from which the per-centre neighbourhoods (round 4, after the joint ones) are planned, and
#: how many centres' MILPs they solve (the LP relaxation of all 40 ranks them: 11 s at load 2.4, 22 s at
#: 3; 20 s at load 2.5 with the big LPs by IPM; the 4 MILPs 4-14 s). They ran from 60 s before the
#: joint neighbourhoods (session opt5); after them they gain little (measured on seed 3: 3,400 besides
#: centre 34, which the pair (34, 29) covers).
CENTRES_BUDGET_S = 90.0
CENTRES = 4
JOINT_REL_GAP = 0.01
#: Relative margin taken off the interior point method's objective (its optimality tolerance is 1e-8).
IPM_MARGIN = 1e-6


def province_limited_work(budget: float, materials: int) -> WorkLimits:
    """Province size with limits: the decomposition on the fleet LP's arcs (round 1) solves as many
    materials as fit after compiling its model; round 2, the merged stock-fleet bound, round 3, the
    joint neighbourhoods, and round 4, the per-centre ones, if the budget leaves room for them;
    ``LIMITED_MATERIAL_NODES`` nodes per MILP."""
    usable = budget * DECOMPOSITION_SHARE - LIMITED_COMPILE_S
    solved = min(materials, max(0, int(math.floor(usable / SECONDS_PER_LIMITED_MATERIAL))))
    rounds = 0 if solved == 0 else (1 + int(budget >= MERGED_STOCK_FLEET_BUDGET_S) + int(budget >= JOINT_BUDGET_S)
                                    + int(budget >= CENTRES_BUDGET_S))
    return WorkLimits(rounds=rounds, mip_nodes=LIMITED_MATERIAL_NODES, materials=solved)


def improve_province_limited(run: "_Anytime", sc: Scenario, flow_value: np.ndarray | None, budget_s: float,
                             work: WorkLimits, info: dict[str, Any]) -> None:
    """The rounds of the module docstring, each while the best plan is not yet proven within the gap.
    Province seed 1, F = 3, lot 20: 100.7 M (the greedy plans) -> 95.38 M (all 20 materials, 1.07 %
    above the fleet bound 94.36 M); the merged stock-fleet bound 94.50 M proves 0.92 %."""
    if work.rounds < 1 or flow_value is None or run.out_of_time(budget_s, "decomposition on the fleet LP's arcs"):
        return
    bound_job = _BoundJob(sc, run.left(budget_s)) if work.rounds >= 2 else None
    res = plan_on_fixed_arcs(sc, top_arcs(sc, flow_value, 0), time_limit_s=run.left(budget_s) * (1 - CHECK_MARGIN),
                             gap=run.gap, max_materials=work.materials,
                             highs_options=work.highs_options() | {"presolve": "on"}, progress=run.progress)
    run.offer(res, f"decomposition by material on the fleet LP's arcs ({res.summary.get('materials_solved', 0)} "
                   f"of {len(sc.materials)} materials solved)")
    # Rounds 3 and 4 run beside the bound's thread, so whether they run is decided by the bounds known
    # without the thread (the aggregate and fleet bounds): the plan never depends on when it finishes.
    if work.rounds >= 3 and not run.proven() and not run.out_of_time(budget_s, "joint neighbourhoods"):
        _pairs_round(run, sc, budget_s, work, flow_value)
    if work.rounds >= 4 and not run.proven() and not run.out_of_time(budget_s, "per-centre neighbourhoods"):
        _centre_round(run, sc, budget_s, work)
    if bound_job is not None:
        info["stock_fleet_bound"] = bound_job.result(max(run.left(budget_s), 0.0))
        if info["stock_fleet_bound"] is None and (bound_job.running() or run.left(budget_s) <= 0.05):
            run.clock_stops.append("stock-fleet bound (sites merged)")  # cut by the safety net
        run.raise_bound(info["stock_fleet_bound"] or 0.0, "stock-fleet bound (sites merged)")


class _BoundJob:
    """The merged stock-fleet bound solved in a thread beside the decomposition (highspy's ``run``
    releases the GIL): the plan does not depend on it, so it may start before the plan exists. Province
    seed 1 (load average 2.3): the plan identical, the bound known at 30.7 s instead of 37 s one after
    the other; on a loaded machine it gets the whole budget instead of what the decomposition leaves."""

    def __init__(self, sc: Scenario, time_limit_s: float):
        self._value: list[float | None] = [None]
        self._thread = threading.Thread(target=self._solve, args=(sc, time_limit_s), daemon=True,
                                        name="merged stock-fleet bound")
        self._thread.start()

    def _solve(self, sc: Scenario, time_limit_s: float) -> None:
        try:
            self._value[0] = merged_stock_fleet_bound(sc, time_limit_s)
        except Exception:  # noqa: BLE001 - a bound that fails is no bound; the plan stands without it
            self._value[0] = None

    def result(self, wait_s: float) -> float | None:
        """The bound, waiting at most ``wait_s`` (+1 s for the solver to notice its own time limit)."""
        self._thread.join(timeout=wait_s + 1.0)
        return None if self._thread.is_alive() else self._value[0]

    def running(self) -> bool:
        return self._thread.is_alive()


def _centre_round(run: "_Anytime", sc: Scenario, budget_s: float, work: WorkLimits) -> int | None:
    """Fix-and-optimize per distribution centre on the best plan (``optimizer.centre_neighbourhood``);
    returns the centre the LP ranking put first (None if none promised a gain)."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    merged = _arrays_of(sc, run.best)
    limit = run.left(budget_s) * (1 - CHECK_MARGIN)
    merged.shipped, merged.delivered, found = improve_centres(ix, n, merged.shipped, merged.delivered, centres=CENTRES,
                                                              nodes=work.mip_nodes, time_limit_s=limit)
    if found["stopped_by_clock"]:
        run.clock_stops.append("per-centre neighbourhoods")
    first = next(iter(found["lp_gains"]), None)
    if not found["gains"]:
        run.trail.append({"stage": f"per-centre neighbourhoods: no gain (LP ranking {found['lp_gains']})",
                          "seconds": round(run.elapsed(), 3), "plan": False})
        return first
    merged.by_clock = found["stopped_by_clock"]
    res = _decomposition_result(sc, merged, run.bound, run.gap, run.elapsed())
    res = dataclasses.replace(res, summary=res.summary | {
        "method": res.summary["method"] + ", then per-centre neighbourhoods", "centre_gains": found["gains"]})
    run.offer(res, f"per-centre neighbourhoods ({len(found['gains'])} of {CENTRES} centres improved)")
    return first


def _pairs_round(run: "_Anytime", sc: Scenario, budget_s: float, work: WorkLimits, flow_value: np.ndarray) -> None:
    """Joint neighbourhoods of ``JOINT_PAIRS`` pairs: the centres where the decomposition's plan delivers
    least against the fleet LP (``fleet_shortfall``), largest first, each with the neighbour whose own
    neighbourhood's LP promises most (``_joint_round``)."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    short = fleet_shortfall(ix, n, flow_value, _arrays_of(sc, run.best).delivered)
    for x in np.argsort(-short, kind="stable")[:JOINT_PAIRS]:
        if run.proven() or run.out_of_time(budget_s, "joint neighbourhoods"):
            return
        _joint_round(run, sc, budget_s, work, int(x))


def _joint_round(run: "_Anytime", sc: Scenario, budget_s: float, work: WorkLimits, lacking: int) -> None:
    """The joint neighbourhood (``improve_joint``) of centre ``lacking`` and the centre that serves one of
    its rescue centres whose own neighbourhood's LP promises most (``lp_gains``): province F = 3, lot 20,
    seeds 1 / 2 / 3, the pairs (11, 12) / (31, 35) / (34, 29), whose joint LPs promise 355,127 / 177,694 /
    723,961; the partner that delivers most there instead promised 355,127 / 15,053 / 723,961."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    merged = _arrays_of(sc, run.best)
    near, t0 = neighbours(ix, lacking), time.perf_counter()
    limit = run.left(budget_s) * (1 - CHECK_MARGIN)
    gains, by_clock = lp_gains(ix, n, merged.shipped, merged.delivered, near, limit)
    pair = [int(near[int(np.argmax(gains))]), lacking] if near.size else [lacking]
    merged.shipped, merged.delivered, found = improve_joint(
        ix, n, merged.shipped, merged.delivered, around=lacking, partners=0, nodes=work.mip_nodes,
        rel_gap=JOINT_REL_GAP, time_limit_s=max(limit - (time.perf_counter() - t0), 1e-3), centres=pair)
    if found["stopped_by_clock"] or by_clock:
        run.clock_stops.append("joint neighbourhood")
    if not found["gain"]:
        run.trail.append({"stage": f"joint neighbourhood of centres {found['centres']}: no gain",
                          "seconds": round(run.elapsed(), 3), "plan": False})
        return
    merged.by_clock = found["stopped_by_clock"] or by_clock
    res = _decomposition_result(sc, merged, run.bound, run.gap, run.elapsed())
    res = dataclasses.replace(res, summary=res.summary | {
        "method": res.summary["method"] + ", then joint neighbourhoods",
        "joint_gains": dict(res.summary.get("joint_gains", {})) | {str(found["centres"]): found["gain"]}})
    run.offer(res, f"joint neighbourhood of centres {found['centres']}")


def fleet_shortfall(ix: Index, n: Numbers, flow_value: np.ndarray, delivered: np.ndarray) -> np.ndarray:
    """Per distribution centre, the theta-weighted value the fleet LP sends from it (``flow_value``
    [delivery arcs, periods]) minus what the plan delivers from it: where the plan's arcs lost most."""
    out = np.zeros(ix.J)
    np.add.at(out, ix.d_j, flow_value.sum(axis=1) - np.einsum("dmt,m->d", delivered, n.theta))
    return out


def merged_stock_fleet_bound(sc: Scenario, time_limit_s: float) -> float | None:
    """The stock-fleet bound with merged supply sites (``optimizer.bounds.stock_fleet_relaxation`` with
    ``merge_sites=True``: the same rows) by HiGHS's interior point method WITHOUT crossover (only the
    objective is needed: 24-26 s against 34 s with crossover at province size), less ``IPM_MARGIN`` of
    it for the solver's tolerance; None if it did not finish optimal within ``time_limit_s``."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    total = float(np.einsum("kmt,m->", n.demand, n.theta))
    supply = _supply_merged(ix, n)
    a_ub, b_ub, a_eq, b_eq = _stock_fleet_rows(ix, n, supply)
    nv, ni = ix.nd * ix.T, ix.n_i
    rows = sp.vstack([a_ub, a_eq]).tocsc()
    h = hp.Highs()
    for name, value in (("output_flag", False), ("solver", "ipm"), ("run_crossover", "off"),
                        ("time_limit", float(max(time_limit_s, 1e-3)))):
        h.setOptionValue(name, value)
    lp = hp.HighsLp()
    lp.num_col_, lp.num_row_ = rows.shape[1], rows.shape[0]
    lp.col_cost_ = np.concatenate([-np.ones(nv), np.zeros(nv + 2 * ni + supply.width)])
    lp.col_lower_ = np.concatenate([np.zeros(2 * nv + ni), ix.per_period(n.safety), np.zeros(supply.width)])
    lp.col_upper_ = np.concatenate([np.full(nv, np.inf), np.ones(nv), np.full(ni, np.inf),
                                    ix.per_period(n.max_inventory), supply.upper])
    lp.row_lower_ = np.concatenate([np.full(a_ub.shape[0], -h.inf), b_eq])
    lp.row_upper_ = np.minimum(np.concatenate([b_ub, b_eq]), h.inf)
    lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = rows.indptr, rows.indices, rows.data
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != hp.HighsModelStatus.kOptimal:
        return None
    value = float(h.getInfo().objective_function_value)  # minus the theta-weighted units delivered
    return max(total + value - IPM_MARGIN * abs(value) - 1e-7 * max(1.0, total), 0.0)


def _arrays_of(sc: Scenario, res: PlanResult) -> _Merged:
    """A plan's flows as arrays (see ``_Merged``)."""
    merged = _Merged.empty(sc)
    mpos = {m: i for i, m in enumerate(structure_of(sc).materials)}
    for f in res.shipments_in:
        merged.shipped[merged.spos[(f.origin, f.destination)], mpos[f.material], f.period - 1] += f.qty
    for f in res.deliveries:
        merged.delivered[merged.dpos[(f.origin, f.destination)], mpos[f.material], f.period - 1] += f.qty
    merged.statuses = dict(res.summary.get("material_statuses", {}))
    return merged


@dataclasses.dataclass
class _Merged:
    """The merged plan of the decomposition as arrays, how each material was planned, and the arc and
    site positions its flows are added by."""

    shipped: np.ndarray  # [supply arcs, M, T] units
    delivered: np.ndarray  # [delivery arcs, M, T] units
    price: np.ndarray  # [supply arcs, M, T] currency units per unit shipped
    spos: dict[tuple[str, str], int]
    dpos: dict[tuple[str, str], int]
    statuses: dict[str, str] = dataclasses.field(default_factory=dict)  # material -> how it was planned
    by_clock: bool = False  # the time limit (not the work limits) stopped a solve or the loop
    stopped: str | None = None  # why not every material was solved

    @classmethod
    def empty(cls, sc: Scenario) -> "_Merged":
        st = structure_of(sc)
        shape = (len(st.materials), st.periods)
        return cls(np.zeros((len(st.supply_arcs), *shape)), np.zeros((len(st.delivery_arcs), *shape)),
                   numbers_of(sc).price[Index(st).s_w], {a: i for i, a in enumerate(st.supply_arcs)},
                   {a: i for i, a in enumerate(st.delivery_arcs)})


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
    st = structure_of(sc)
    kept = np.flatnonzero(open_arcs.any(axis=1))  # arcs open in some period: a smaller model to compile
    bound, spend = aggregate_relaxation(sc)
    subs = material_subproblems(sc, material_budgets(sc, spend), keep_limits=True,
                                delivery_arcs=[st.delivery_arcs[i] for i in kept])
    merged = _Merged.empty(sc)
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
            carry = _add_greedy(sc, scm, mi, open_kept, merged)
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
            carry = _add_greedy(sc, scm, mi, open_kept, merged)
            continue
        merged.statuses[m] = res.status.value + (" (lot passed on)" if lot_passed_on else "")
        carry = _add_flows(mi, res.shipments_in, res.deliveries, merged, scm.budget)


def _add_flows(mi: int, shipments: tuple[Flow, ...] | list[Flow], deliveries: tuple[Flow, ...] | list[Flow],
               merged: _Merged, budget: float | None) -> float:
    """Add one material's flows to the merged plan; returns the money of its share it left unspent."""
    spent = 0.0
    for f in shipments:
        a = merged.spos[(f.origin, f.destination)]
        merged.shipped[a, mi, f.period - 1] += f.qty
        spent += f.qty * merged.price[a, mi, f.period - 1]
    for f in deliveries:
        merged.delivered[merged.dpos[(f.origin, f.destination)], mi, f.period - 1] += f.qty
    return 0.0 if budget is None else max(float(budget) - spent, 0.0)


def _add_greedy(sc: Scenario, sub: Scenario, mi: int, open_kept: np.ndarray, merged: _Merged) -> float:
    """A material not solved follows its greedy plan within its share, on the open arcs."""
    m = structure_of(sc).materials[mi]
    ship, dels = _greedy_flows(sub, m, open_kept)
    merged.statuses[m] = "greedy"
    return _add_flows(mi, ship, dels, merged, sub.budget)


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
    spent = float(np.einsum("smt,smt->", merged.shipped, merged.price))
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
