"""Anytime planning: a checked plan with a proven gap within seconds at every size, then improve it.

A dispatcher with no plan publishes no orders. So:

1. FIRST PLAN: the aggregate bound (network dropped; milliseconds) and the greedy urgency-first plan
   (``optimizer.greedy``), which respects every rule including minimum lots and delivery limits; its
   gap against that bound is proven at once. Without limits also (at province size only) the greedy
   plan that buys ahead within each material's budget share (province seed 1: 5.4 % against 70 %); at
   province size the decomposition's own, each material's within its shares (``_greedy_ahead``).
2. BOUND: with delivery limits or a minimum lot, the fleet bound (delivery limits kept, stock flow
   dropped; ``optimizer.bounds``; up to 2 s at province size) raises the bound and the first plan's
   gap is announced again; then a second greedy plan restricted to the arcs the fleet LP chooses.
3. IMPROVE within the budget:
   - with delivery limits or a minimum lot, in rounds (``optimizer.work``): (1) fix-and-optimize: the
     full MILP restricted to the delivery arcs the fleet bound's LP values most (per centre and period,
     as many as its limit allows); (2) the stock-fleet bound (the fleet LP with the centres' stock
     flow, ``optimizer.bounds``), then fix-and-optimize on the union of both LPs' arcs, warm-started;
     (3) the full model's LP relaxation with per-material linking rows (``optimizer.cuts``), a bound;
     (4) the full MILP warm-started from the best plan (its dual bound joins the quick bound). A round
     runs only while the best plan is not yet within the gap of the bound. Sliding windows of periods
     with more arcs open were tried as further neighbourhoods and dropped: no improvement at city size
     in 30 s, slower than the warm-started MILP at paper size;
   - without them: the LP bound + RENS solve (``Planner.solve``), or at province size the
     decomposition by material (``optimizer.decompose``) in ``MATERIAL_LANES`` threads, started first
     (``_start_decomposition``): it hands over its greedy plans, checked, as the first plan;
   - with limits at province size (> 200,000 columns) the full-model stages are skipped: building
     and compiling that model took minutes at load average 11-16 and HiGHS overran its limit on it;
     instead (``optimizer.province_limited``) the decomposition by material with the delivery arcs fixed to the
     fleet LP's choice (the limits then hold whatever each material does; the minimum lot and the budget
     passed on from material to material), the stock-fleet bound with the supply sites merged, and
     fix-and-optimize per distribution centre.
   Every candidate passes the independent check (``optimizer.check``) before it can replace the best.

Reproducibility: the plan is a pure function of the scenario and the work limits
(``optimizer.work``; by default a pure function of the budget and the scenario's size): stages 1-2 are
deterministic, and the improvement's stages, the nodes each MILP may explore and the materials the
decomposition solves are counted, not timed. HiGHS is deterministic on the same model and options.
The budget is only a safety net: every solver call gets what is left of it as its time limit, and if
the clock stops a stage (or leaves none to start) ``summary["stopped_by_clock"]`` is True, the stages
it cut are named in ``summary["clock_stops"]``, and a restart could publish a different (equally
checked) plan: the dispatcher states it and persists each plan before publishing it, so a restart
republishes the stored one.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable

import numpy as np

from optimizer.bounds import fleet_relaxation, stock_fleet_relaxation
from optimizer.check import PlanCheck, check_plan
from optimizer.cuts import strengthened_lp_bound
from optimizer.decompose import aggregate_relaxation, material_budgets, plan_by_material
from optimizer.greedy import greedy_plan
from optimizer.index import Index, numbers_of, structure_of
from optimizer.model import Planner
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario, load_scenario
from optimizer.summary import summarise
from optimizer.urgency import urgency as compute_urgency
from optimizer.work import PROVINCE_COLUMNS, WorkLimits, work_for_budget

CHECK_MARGIN = 0.15  # share of the budget left after the greedy plan kept for the decomposition's merge and check
#: Materials the decomposition without limits solves at once (threads; HiGHS releases the GIL). A fixed
#: number, not the machine's cores: the plan depends on it (each lane chains its own LP bases).
MATERIAL_LANES = 2


def _gap(objective: float, bound: float) -> float:
    return 0.0 if objective <= 1e-9 else max(0.0, (objective - bound) / objective)


def greedy_result(sc: Scenario, bound: float, gap: float, allowed: np.ndarray | None = None,
                  budgets: np.ndarray | None = None) -> PlanResult | None:
    """The greedy plan as a PlanResult (flows, shortage, summary), or None if the greedy rules fail.
    ``allowed``: the delivery arcs it may use per period (see ``greedy_plan``); ``budgets``: each
    material's share of the budget, given for the greedy plan that buys ahead (``lookahead``)."""
    g = greedy_plan(sc, allowed, lookahead=budgets is not None, budgets=budgets)
    if not g.feasible:
        return None
    st = structure_of(sc)
    ix = Index(st)
    n = numbers_of(sc)
    ship = _flows(g.shipped, np.asarray(st.supply_sites, dtype=object)[ix.s_w],
                  np.asarray(st.distribution_centres, dtype=object)[ix.s_j], st.materials)
    dels = _flows(g.delivered, np.asarray(st.distribution_centres, dtype=object)[ix.d_j],
                  np.asarray(st.rescue_centres, dtype=object)[ix.d_k], st.materials)
    short = g.shortage
    k_i, m_i, t_i = np.nonzero(short > 1e-9)
    shortages = tuple(map(Shortage, np.asarray(st.rescue_centres, dtype=object)[k_i].tolist(),
                          np.asarray(st.materials, dtype=object)[m_i].tolist(), (t_i + 1).tolist(),
                          short[k_i, m_i, t_i].astype(float).tolist()))
    bound = min(bound, g.objective)
    gap_v = _gap(g.objective, bound)
    return PlanResult(status=SolveStatus.OPTIMAL if gap_v <= gap else SolveStatus.FEASIBLE, objective=g.objective,
                      bound=bound, gap=gap_v, solve_seconds=g.seconds, build_seconds=0.0, compile_seconds=0.0,
                      urgency=compute_urgency(sc.materials, sc.theta), shipments_in=ship, deliveries=dels,
                      shortage=shortages, summary=summarise(sc, n, short, spent=g.spent) | {
                          "method": "greedy on the fleet LP's arcs" if allowed is not None
                          else "greedy" if budgets is None else "greedy buying ahead"},
                      message="greedy urgency-first plan")


def _flows(qty: np.ndarray, origin: np.ndarray, destination: np.ndarray, materials: tuple[str, ...]) -> tuple[Flow, ...]:
    """Flows of an [arcs, M, T] quantity array (whole units above 0.5), names looked up per arc in
    bulk: at province size a per-flow lookup took 2-3 s of the first plan's time."""
    a, m, t = np.nonzero(qty > 0.5)
    return tuple(map(Flow, origin[a].tolist(), destination[a].tolist(),
                     np.asarray(materials, dtype=object)[m].tolist(), (t + 1).tolist(),
                     qty[a, m, t].astype(float).tolist()))


def used_arcs(sc: Scenario, res: PlanResult) -> np.ndarray:
    """[nd, T] booleans: the delivery arcs a plan uses in each period."""
    st = structure_of(sc)
    dpos = {a: i for i, a in enumerate(st.delivery_arcs)}
    used = np.zeros((len(st.delivery_arcs), st.periods), dtype=bool)
    for f in res.deliveries:
        used[dpos[(f.origin, f.destination)], f.period - 1] = True
    return used


def top_arcs(sc: Scenario, flow_value: np.ndarray, extra: int) -> np.ndarray:
    """[nd, T]: per centre and period its limit's worth of delivery arcs by fleet-LP value, plus ``extra``."""
    ix = Index(structure_of(sc))
    n = numbers_of(sc)
    open_ = np.zeros((ix.nd, ix.T), dtype=bool)
    for j in range(ix.J):
        arcs = np.flatnonzero(ix.d_j == j)
        cap = int(n.max_deliveries[j]) if n.max_deliveries[j] >= 0 else len(arcs)
        for t in range(ix.T):
            top = arcs[np.argsort(-flow_value[arcs, t], kind="stable")[:cap + extra]]
            open_[top, t] = True
    return open_


class _Anytime:
    """The best checked plan so far, the best proven bound, and the trail of stages (for the summary)."""

    def __init__(self, sc: Scenario, gap: float, on_plan: Callable[[PlanResult, float], None] | None,
                 progress: Callable[[str], None]):
        self.sc, self.gap, self.on_plan, self.progress = sc, gap, on_plan, progress
        self.t0 = time.perf_counter()
        self.bound = 0.0
        self.best: PlanResult | None = None
        self.trail: list[dict[str, Any]] = []  # the plan stages
        self.bound_seconds: dict[str, float] = {}  # when each quick bound was known, s since the start
        self.clock_stops: list[str] = []  # stages the wall-clock safety net cut short or left out

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def raise_bound(self, bound: float, stage: str) -> None:
        """A new proven bound: the best plan's gap is announced again if it shrank."""
        self.bound_seconds[stage] = round(self.elapsed(), 3)
        if bound > self.bound:
            self.bound = bound
            if self.best is not None and self.on_plan is not None:
                self.on_plan(_with_bound(self.best, self.bound, self.gap), self.elapsed())

    def offer(self, res: PlanResult | None, stage: str, checked: PlanCheck | None = None) -> None:
        """Check a candidate independently; keep it if it passes and is better than the best.
        ``checked``: its check made already (``check_plan`` of this scenario and this result)."""
        if res is not None and _stopped_by_clock(res):
            self.clock_stops.append(stage)
        if res is None or not res.has_plan:
            self.trail.append({"stage": stage, "seconds": round(self.elapsed(), 3), "plan": False})
            return
        if res.bound is not None:
            self.bound = max(self.bound, res.bound)  # every stage's bound is a bound of the whole scenario
        chk = checked if checked is not None else check_plan(self.sc, res)
        self.trail.append({"stage": stage, "seconds": round(self.elapsed(), 3), "objective": chk.objective,
                           "check": "passed" if chk.ok else f"FAILED: {chk.violations[0]}",
                           "solver_status": res.summary.get("solver_status")})  # e.g. work_limit, time_limit
        if chk.ok and (self.best is None or chk.objective < self.best.objective - 1e-9):
            self.best = res
            if self.on_plan is not None:
                self.on_plan(_with_bound(self.best, self.bound, self.gap), self.elapsed())
        self.progress(f"{stage}: objective {chk.objective:,.1f}, bound {self.bound:,.1f}, "
                      f"check {'passed' if chk.ok else 'FAILED'}")

    def left(self, budget_s: float) -> float:
        return budget_s - self.elapsed()

    def out_of_time(self, budget_s: float, stage: str) -> bool:
        """The safety net: True (and the stage recorded as cut by the clock) if the budget is spent."""
        if self.left(budget_s) > 0.05:
            return False
        self.clock_stops.append(stage)
        self.trail.append({"stage": f"{stage}: not started, the time budget is spent", "seconds": round(self.elapsed(), 3),
                           "plan": False})
        return True

    def proven(self) -> bool:
        return self.best is not None and _gap(self.best.objective, self.bound) <= self.gap

    def target(self) -> dict[str, float]:
        """HiGHS's ``objective_target`` for a MILP: stop at the first plan within the gap of the bound
        known now (a stop decided by the inputs, not the clock; at city size with limits the
        neighbourhood on both LPs' arcs reached 1 % well before its own optimum)."""
        if self.bound <= 0:
            return {}
        return {"objective_target": self.bound / (1 - self.gap) * (1 - 1e-9)}


def plan_anytime(scenario: "Scenario | str | dict", *, budget_s: float = 60.0, gap: float = 1e-2,
                 planner=None, progress: Callable[[str], None] = lambda s: None,
                 on_plan: Callable[[PlanResult, float], None] | None = None,
                 work: WorkLimits | None = None) -> PlanResult:
    """The best checked plan the work limits allow, ``budget_s`` a wall-clock safety net (see the
    module docstring).

    ``work``: deterministic work limits (default :func:`optimizer.work.work_for_budget` of the budget
    and the scenario's size). ``on_plan(result, seconds since start)`` is called with every improving
    plan and every improved bound (the benchmark records gap over time with it). ``planner``: a
    ``Planner`` compiled for this structure to reuse.
    """
    sc = load_scenario(scenario)
    run = _Anytime(sc, gap, on_plan, progress)
    st = structure_of(sc)
    limited = st.has_min_lot or bool(st.limited_centres)
    work = work if work is not None else work_for_budget(budget_s, _columns(sc), len(sc.materials), limited)
    agg, spend = aggregate_relaxation(sc)  # milliseconds: the first plan gets a proven gap at once
    run.raise_bound(agg, "aggregate bound")
    bounds_info: dict[str, Any] = {"aggregate_bound": agg}
    early = _start_decomposition(sc, planner, run.left(budget_s), gap, work, limited)
    if limited or _columns(sc) <= PROVINCE_COLUMNS:
        run.offer(greedy_result(sc, run.bound, gap), "greedy")
    if not limited:
        # buying ahead with each material's share of the budget: province 8.6 % from the bound against
        # the myopic greedy's 70 % (which smaller sizes still try: it is cheap there)
        run.offer(*_greedy_ahead(sc, run, spend, early))
    flow_value = _fleet_stage(run, sc, bounds_info) if limited else None
    if limited:
        _improve_limited(run, sc, planner, flow_value, budget_s, work, bounds_info)
    elif early is not None or (work.rounds >= 1 and not run.out_of_time(budget_s, "improvement")):
        res = early[0].result() if early is not None else _unlimited(sc, planner, run.left(budget_s), gap, work)
        run.offer(res, "decomposition by material" if str(res.summary.get("method", "")).startswith("decomposition")
                  else "LP bound + RENS")
    return _final(run, bounds_info | {"work_limits": work.to_json_dict()})


def _budget_shares(sc: Scenario, spend: np.ndarray) -> np.ndarray:
    """Each material's share of the budget (``material_budgets``); without a budget, no cap."""
    shares = material_budgets(sc, spend)
    return np.full(len(sc.materials), np.inf) if shares is None else shares


def _start_decomposition(sc: Scenario, planner, left: float, gap: float, work: WorkLimits,
                         limited: bool) -> "tuple[Future[PlanResult], Future[tuple[PlanResult, PlanCheck]]] | None":
    """Province size without limits: the decomposition by material starts in a thread at once, and
    hands over its greedy plans, checked (the second future), for the first plan, while HiGHS solves
    the first materials (it releases the GIL). Checked in that thread before its next Python work
    (the bound with the maximum flows), not beside it: the first plan comes sooner. Its result does
    not depend on that overlap: the same call, the same inputs."""
    if limited or work.rounds < 1 or planner is not None or _columns(sc) <= PROVINCE_COLUMNS or left <= 0.05:
        return None
    first: Future[tuple[PlanResult, PlanCheck]] = Future()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decomposition")
    future = pool.submit(_unlimited, sc, planner, left, gap, work,
                         lambda res: first.set_result((res, check_plan(sc, res))))
    pool.shutdown(wait=False)  # the thread ends with the decomposition; the caller waits on the future
    return future, first


def _greedy_ahead(sc: Scenario, run: _Anytime, spend: np.ndarray,
                  early: "tuple[Future[PlanResult], Future[tuple[PlanResult, PlanCheck]]] | None",
                  ) -> tuple[PlanResult | None, str, PlanCheck | None]:
    """The greedy plan buying ahead within each material's budget share, its stage name and its check
    if made. With the decomposition started (province size) it is the decomposition's own: each
    material's greedy plan within its shares, made there for the proven-prefix stop anyway (the whole
    scenario's greedy plan beside it was 1.0-1.5 s of Python more); made here only if the
    decomposition ended without it."""
    if early is not None:
        wait(early, return_when=FIRST_COMPLETED)
        if early[1].done():
            res, chk = early[1].result()
            return res, "greedy buying ahead, material by material", chk
    return greedy_result(sc, run.bound, run.gap, budgets=_budget_shares(sc, spend)), "greedy buying ahead", None


def _fleet_stage(run: _Anytime, sc: Scenario, info: dict[str, Any]) -> np.ndarray | None:
    """The fleet bound (``optimizer.bounds``), announced as it comes, and a greedy plan on the fleet LP's
    arcs; returns the fleet LP's value per delivery arc and period (None if it did not solve)."""
    info["fleet_bound"], flow_value = fleet_relaxation(sc)
    run.raise_bound(info["fleet_bound"], "fleet bound")
    if flow_value is not None:
        run.offer(greedy_result(sc, run.bound, run.gap, top_arcs(sc, flow_value, 0)), "greedy on the fleet LP's arcs")
    return flow_value


def _improve_limited(run: _Anytime, sc: Scenario, planner, flow_value: np.ndarray | None, budget_s: float,
                     work: WorkLimits, info: dict[str, Any]) -> None:
    """Round 1: fix-and-optimize on the fleet LP's arcs; round 2: the stock-fleet bound, then
    fix-and-optimize on the union of both LPs' arcs (``_round_two``); round 3: the full model's LP
    relaxation with per-material linking rows (``optimizer.cuts``), a bound; round 4: the full MILP
    warm-started from the best plan. Each MILP may explore ``work.mip_nodes`` nodes; the budget is only
    the safety net.

    At province size (building and compiling the full model alone took 128 s at load average 11, and
    HiGHS overran its limit on it) the decomposition on fixed arcs replaces these rounds
    (``optimizer.province_limited``)."""
    if _columns(sc) > PROVINCE_COLUMNS and planner is None:
        run.trail.append({"stage": "full-model stages skipped (province size)", "seconds": round(run.elapsed(), 3),
                          "plan": False})
        from optimizer.province_limited import improve_province_limited  # it imports this module
        improve_province_limited(run, sc, flow_value, budget_s, work, info)
        return
    if work.rounds < 1 or run.out_of_time(budget_s, "fix-and-optimize"):
        return
    stock_fleet = _start_stock_fleet(sc, flow_value, run.left(budget_s), work)
    if planner is None:
        planner = Planner(sc)
    options = work.highs_options()
    if flow_value is not None:
        open_ = top_arcs(sc, flow_value, 0)
        res = planner.solve(sc, time_limit_s=run.left(budget_s), gap=run.gap / 4, open_arcs=open_,
                            reuse_basis=False, highs_options=options)
        run.offer(res, f"fix-and-optimize on the fleet LP's arcs ({int(open_.sum())} open)")
    if stock_fleet is not None:
        _round_two(run, sc, planner, flow_value, budget_s, options, info, stock_fleet)
    if work.rounds >= 3 and not run.proven() and not run.out_of_time(budget_s, "strengthened LP bound"):
        bound = strengthened_lp_bound(planner, sc, run.left(budget_s))
        if bound is None and run.left(budget_s) <= 0.05:
            run.clock_stops.append("strengthened LP bound")
        run.raise_bound(bound or 0.0, "strengthened LP bound")
    if work.rounds >= 4 and not run.proven() and not run.out_of_time(budget_s, "full MILP"):
        res = planner.solve(sc, time_limit_s=run.left(budget_s), gap=run.gap, warm_start=run.best, reuse_basis=False,
                            highs_options=options)
        run.offer(res, "full MILP warm-started from the best plan")


def _start_stock_fleet(sc: Scenario, flow_value: np.ndarray | None, left: float,
                       work: WorkLimits) -> "Future[tuple[float, np.ndarray | None]] | None":
    """Round 2's stock-fleet LP, started in a thread before round 1's model is built and solved: the
    two are independent and HiGHS releases the GIL, so on 2 cores the bound is there when round 1 ends
    (city with limits: 1.4 s of the 10 s target saved at load average 2). None when round 2 is not
    planned (work limits) or at province size (there the LP did not finish in 150 s)."""
    if work.rounds < 2 or flow_value is None or _columns(sc) > PROVINCE_COLUMNS or left <= 0.05:
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stock-fleet")
    future = pool.submit(stock_fleet_relaxation, sc, time_limit_s=left)
    pool.shutdown(wait=False)
    return future


def _round_two(run: _Anytime, sc: Scenario, planner, flow_value: np.ndarray, budget_s: float,
               options: dict[str, int], info: dict[str, Any],
               stock_fleet: "Future[tuple[float, np.ndarray | None]]") -> None:
    """The stock-fleet bound (``optimizer.bounds``: the fleet LP with the stock flow; 1.4-8 s at city
    size), then fix-and-optimize on the union of the fleet LP's and the stock-fleet LP's arcs,
    warm-started from the best plan (city seed 1: 10,608,621 -> 10,559,801 in 10-26 s). In round 2,
    not before: the dispatcher's short budgets keep the first round as it was. The bound (computed
    since round 1 began, ``_start_stock_fleet``) is taken even when round 1 proved the gap already."""
    info["stock_fleet_bound"], stock_value = stock_fleet.result()
    run.raise_bound(info["stock_fleet_bound"], "stock-fleet bound")
    if stock_value is None:
        if run.left(budget_s) <= 0.05:  # its LP was cut by the safety net
            run.clock_stops.append("stock-fleet bound")
        return
    if run.proven() or run.out_of_time(budget_s, "fix-and-optimize on both LPs' arcs"):
        return
    open_ = top_arcs(sc, flow_value, 0) | top_arcs(sc, stock_value, 0)
    # presolve on: it removes the closed arcs' columns (city: 10-11 s against 19-33 s with it off)
    res = planner.solve(sc, time_limit_s=run.left(budget_s), gap=run.gap / 4, open_arcs=open_,
                        warm_start=run.best, reuse_basis=False,
                        highs_options=options | {"presolve": "on"} | run.target())
    run.offer(res, f"fix-and-optimize on both LPs' arcs ({int(open_.sum())} open)")


def _stopped_by_clock(res: PlanResult) -> bool:
    """Did the wall clock (not the work limits) decide how this stage's result came out?"""
    return res.summary.get("solver_status") == "time_limit" or bool(res.summary.get("stopped_by_clock"))


def _final(run: _Anytime, bounds_info: dict[str, float]) -> PlanResult:
    sc = run.sc
    if run.best is None:
        return PlanResult(status=SolveStatus.NO_SOLUTION, objective=None, bound=run.bound, gap=None,
                          solve_seconds=run.elapsed(), build_seconds=0.0, compile_seconds=0.0,
                          urgency=compute_urgency(sc.materials, sc.theta),
                          summary={"trajectory": run.trail, **bounds_info,
                                   "stopped_by_clock": bool(run.clock_stops), "clock_stops": run.clock_stops},
                          message="no plan passed the check within the budget")
    final = _with_bound(run.best, run.bound, run.gap)
    elapsed = run.elapsed()
    summary = dict(final.summary) | bounds_info | {
        "trajectory": run.trail, "bounds_known_at_seconds": run.bound_seconds, "anytime_seconds": round(elapsed, 3),
        "first_plan_seconds": next((e["seconds"] for e in run.trail if e.get("check") == "passed"), None),
        "stopped_by_clock": bool(run.clock_stops), "clock_stops": run.clock_stops,
        "method": f"anytime: {run.best.summary.get('method')}"}
    return dataclasses.replace(final, solve_seconds=elapsed, summary=summary)


def _with_bound(res: PlanResult, bound: float, gap: float) -> PlanResult:
    b = min(bound, res.objective)
    g = _gap(res.objective, b)
    status = SolveStatus.OPTIMAL if g <= gap else SolveStatus.FEASIBLE
    msg = (f"proven within {gap:.1%} of the bound" if status is SolveStatus.OPTIMAL
           else f"a checked plan, {g:.2%} from the proven bound")
    return dataclasses.replace(res, bound=b, gap=g, status=status, message=msg)


def _columns(sc: Scenario) -> int:
    ix = Index(structure_of(sc))
    return ix.n_x + ix.n_y + ix.n_i


def _unlimited(sc: Scenario, planner, left: float, gap: float, work: WorkLimits,
               on_greedy: Callable[[PlanResult], None] | None = None) -> PlanResult:
    """Improve a scenario without delivery limits or minimum lot: one MILP, or by material if large."""
    if planner is None and _columns(sc) > PROVINCE_COLUMNS:
        # 15 % of what is left is kept for merging the materials and checking the merged plan (the
        # check alone took 2.5-5 s at province size, load average 11; without the margin the budget
        # was overrun by 1.7 s)
        return plan_by_material(sc, time_limit_s=left * (1 - CHECK_MARGIN), gap=gap, greedy_fallback=True,
                                max_materials=work.materials, highs_options=work.highs_options(),
                                lanes=MATERIAL_LANES, stop_when_proven=True, on_greedy=on_greedy)
    if planner is None:
        planner = Planner(sc)
    return planner.solve(sc, time_limit_s=left, gap=gap, reuse_basis=False, highs_options=work.highs_options())
