"""Province-size planning: decomposition by material, proven against an aggregate bound.

At province size (M20 T14 W500 J40 K400) HiGHS's presolve alone overruns a 60 s limit on the full
MILP. So:

1. A valid LOWER bound from an aggregate relaxation: every site and centre merged into one node per
   material, routing, capacity, safety stock and delivery limits dropped, timing kept only in that
   receipts of the last period cannot be delivered. What remains is a small LP (units bought per
   site, material and period, under the budget), solved exactly with HiGHS through scipy.
2. A feasible plan by MATERIAL (see :func:`plan_by_material`): one single-material MILP each, with
   the coupled resources (budget, centre capacity) split up front. We also tried a decomposition by
   REGION (groups of centres along the arc graph, cross-region arcs dropped): on city-size seeds it
   ended 18-41 % above the bound, because supply and demand are not balanced region by region.
3. gap = (plan objective - aggregate bound) / plan objective, a proven gap (possibly pessimistic,
   since the aggregate bound ignores the network).
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Callable

import numpy as np

from optimizer.errors import ScenarioError
from optimizer.flow_bound import max_deliverable
from optimizer.greedy import greedy_plan
from optimizer.index import Index, numbers_of, structure_of
from optimizer.model import Planner
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario, load_scenario
from optimizer.summary import summarise
from optimizer.urgency import urgency as compute_urgency


def aggregate_bound(sc: Scenario) -> float:
    """A valid lower bound on sum theta * shortage (see the module docstring)."""
    return aggregate_relaxation(sc)[0]


def aggregate_relaxation(sc: Scenario, deliverable: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """(lower bound, money the relaxation spends on each material [M]); see ``_aggregate``."""
    value, spend, _ = _aggregate(sc, deliverable)
    return value, spend


def _aggregate(sc: Scenario, deliverable: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """(lower bound, money the relaxation spends on each material [M], each material's part of the
    bound [M]: theta x what the relaxation leaves short of it). The parts sum to the bound, but each is
    no bound of its material alone (the budget is shared): the decomposition orders by them.

    ``deliverable`` ([M] units, e.g. ``optimizer.flow_bound.max_deliverable``): no plan delivers more of
    a material than that, so its shortage is at least demand - deliverable whatever is bought, and
    buying beyond deliverable - initial stock is of no use: the bound keeps both the budget and the
    network's limit."""
    n = numbers_of(sc)
    W, M, T = n.supply.shape
    demand = n.demand.sum(axis=(0, 2))
    reach = demand if deliverable is None else np.minimum(demand, deliverable)
    unreachable = float(n.theta @ (demand - reach))  # short whatever is bought
    need = np.maximum(reach - n.initial.sum(axis=0), 0.0)  # [M]
    spend = np.zeros(M)
    if T <= 1 or not need.any():
        return float(n.theta @ need) + unreachable, spend, n.theta * (need + demand - reach)
    # The LP is a fractional knapsack with a cap per material and per site's stock on hand (nested
    # caps: tranche within site and material within material): buying greedily by theta / price
    # (cheapest first within a material, skipping materials whose need is met and sites with nothing
    # left on hand) is exactly optimal (for each budget multiplier the profitable tranches are those
    # with theta/price above it, and cheapest-first is optimal under nested caps).
    sup = n.supply[:, :, :-1]  # receipts deliverable within the horizon
    w_i, m_i, t_i = np.nonzero(sup > 0)
    units = sup[w_i, m_i, t_i]
    on_hand_left = n.on_hand.copy()  # [W, M]: a site's tranches over all periods share it
    price = n.price[:, :, :-1][w_i, m_i, t_i]
    ratio = np.where(price > 0, n.theta[m_i] / np.maximum(price, 1e-300), np.inf)
    order = np.argsort(-ratio, kind="stable")
    money = np.inf if n.budget is None else float(n.budget)
    left = need.tolist()
    spent = spend.tolist()
    on_hand = on_hand_left.tolist()
    # Python lists in the loop: numpy scalar indexing made it 1.4 s at province size (130,000 tranches)
    for m, w, q_max, p in zip(m_i[order].tolist(), w_i[order].tolist(), units[order].tolist(), price[order].tolist()):
        if left[m] <= 0:
            continue
        q = min(q_max, left[m], on_hand[w][m])
        if p > 0:
            q = min(q, money / p)
        if q <= 0:
            if money <= 0:
                break  # the budget is spent
            continue  # this site has nothing left on hand
        left[m] -= q
        on_hand[w][m] -= q
        spent[m] += q * p
        money -= q * p
    left, spend = np.array(left), np.array(spent)
    value = float(n.theta @ np.maximum(left, 0.0)) + unreachable
    return max(value - 1e-9 * max(1.0, value), 0.0), spend, n.theta * (np.maximum(left, 0.0) + demand - reach)


COMMON_ID = "material"
NETWORK_NOTE = " and the materials' maximum flows"


def material_subproblems(sc: Scenario, budgets: np.ndarray | None, keep_limits: bool = False,
                         delivery_arcs: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One single-material scenario dict per material; capacity split as initial stock + free space
    in proportion to the material's share of demand, budget as given (``budgets[m]``). Every one
    names its material ``COMMON_ID``, so all share ONE structure: one compiled model serves them all
    and each LP starts from the previous material's simplex basis.

    ``keep_limits``: each keeps the centres' delivery limits and the minimum lot (then a lot of ONE
    material: stricter than the lot of all materials together, so still a restriction); without it
    both are dropped (the caller refuses such scenarios). ``delivery_arcs``: only these delivery arcs
    exist in the subproblems (the rest closed in every period: a smaller model to compile)."""
    n = numbers_of(sc)
    st = structure_of(sc)
    caps = capacity_shares(sc)
    full = sc.to_dict()
    out = []
    for i, m in enumerate(st.materials):
        c = COMMON_ID
        sub = dict(full, name=f"{sc.name}-{m}")
        sub["materials"] = [dict(d, id=c, theta=float(n.theta[i])) for d in full["materials"] if d["id"] == m]
        sub["supply_sites"] = [{"id": w["id"], "supply": {c: w["supply"][m]}, "price": {c: w["price"][m]},
                                **({"on_hand": {c: w["on_hand"][m]}} if "on_hand" in w else {})}
                               for w in full["supply_sites"]]
        sub["rescue_centres"] = [{"id": k["id"], "demand": {c: k["demand"][m]}} for k in full["rescue_centres"]]
        dcs = []
        for j, d in enumerate(full["distribution_centres"]):
            cap = float(caps[j, i])
            limit = d.get("max_deliveries_per_period") if keep_limits else None
            dcs.append({"id": d["id"], "capacity": cap, "initial": {c: d["initial"][m]},
                        "max_inventory": {c: min(d["max_inventory"][m], cap)},
                        "safety_stock": {c: d["safety_stock"][m]},
                        **({"max_deliveries_per_period": limit} if limit is not None else {})})
        sub["distribution_centres"] = dcs
        if not keep_limits:
            sub.pop("min_lot", None)
        if delivery_arcs is not None:
            sub["arcs"] = {"supply": [list(a) for a in st.supply_arcs], "delivery": [list(a) for a in delivery_arcs]}
        if budgets is not None:
            sub["budget"] = float(np.floor(budgets[i] * 100) / 100)
        out.append(sub)
    return out


def capacity_shares(sc: Scenario) -> np.ndarray:
    """[J, M] each centre's capacity for each material in the decomposition: its initial stock of the
    material plus the free space in proportion to the material's share of demand (whole units)."""
    n = numbers_of(sc)
    M = n.demand.shape[1]
    demand_share = n.demand.sum(axis=(0, 2))
    demand_share = demand_share / demand_share.sum() if demand_share.sum() > 0 else np.full(M, 1.0 / M)
    free = np.maximum(n.capacity - n.initial.sum(axis=1), 0.0)  # [J]
    return n.initial + np.floor(free[:, None] * demand_share[None, :])


def material_budgets(sc: Scenario, spend: np.ndarray) -> np.ndarray | None:
    """Each material's share of the budget: what the aggregate relaxation spends on it, plus any money
    it leaves unspent in proportion to the material's supply cost; never above the total. None
    without a budget."""
    n = numbers_of(sc)
    if n.budget is None:
        return None
    supply_cost = (n.supply * n.price).sum(axis=(0, 2))
    left = max(float(n.budget) - float(spend.sum()), 0.0)
    budgets = spend + (left * supply_cost / supply_cost.sum() if supply_cost.sum() > 0 else 0.0)
    return budgets * min(1.0, float(n.budget) / max(float(budgets.sum()), 1e-9))


def material_order(sc: Scenario) -> list[int]:
    """Materials by what is at stake (theta x demand not covered by initial stock), largest first: when
    the time runs out before every material is solved, the solved ones are those that matter most."""
    n = numbers_of(sc)
    stake = n.theta * np.maximum(n.demand.sum(axis=(0, 2)) - n.initial.sum(axis=0), 0.0)
    return [int(i) for i in np.argsort(-stake, kind="stable")]


def plan_by_material(scenario: "Scenario | str | dict", *, time_limit_s: float = 60.0, gap: float = 1e-2,
                     progress: Callable[[str], None] = lambda s: None,
                     max_materials: int | None = None, greedy_fallback: bool = False,
                     highs_options: dict[str, Any] | None = None, open_arcs: np.ndarray | None = None,
                     lanes: int = 1, stop_when_proven: bool = False,
                     on_greedy: Callable[[PlanResult], None] | None = None) -> PlanResult:
    """Decomposition by MATERIAL: one single-material MILP each, coupled resources split up front.

    Materials are coupled only by the budget and the centres' shared capacity (and by minimum lots and
    delivery limits, which this method does not support). The budget goes to each material as
    :func:`material_budgets` says; each centre's capacity is split as its initial stock of the material
    plus the free space in proportion to the material's share of demand. Both only restrict the
    problem, so the merged plan is feasible; the gap is proven against the aggregate bound.

    Anytime: materials are solved most-at-stake first (:func:`material_order`); if the time runs out,
    the materials not yet solved ship nothing (within their share that is feasible: their stock stays
    at its initial level), or with ``greedy_fallback`` follow their greedy plan within their share
    (made after the loop, for those only), and the merged plan is returned as FEASIBLE with its proven gap, rather than
    no plan at all. ``max_materials`` stops after so many materials whatever the clock (a work limit:
    the plan is then a function of the inputs alone, unless the clock stops it first:
    ``summary["stopped_by_clock"]`` says whether it did). ``highs_options`` go to every material's
    solve (e.g. a node limit, ``optimizer.work``).

    With delivery limits or a minimum lot, ``open_arcs`` ([delivery arcs, periods] booleans, at most
    each centre's limit open per period) is required: every material may deliver only on those arcs,
    so the merged plan keeps the limits whichever arcs each material uses, and each material keeps the
    minimum lot on its own (stricter than the lot of all materials together, so the merged plan keeps
    it too). That is the coupling kept by fixing it: the arcs are the fleet's choice, made once.

    ``lanes``: materials solved at once, in threads (see ``_solve_materials``; the plan depends on it,
    not on the timing).

    ``stop_when_proven`` (with ``greedy_fallback``, no limits): the others' greedy plans buy ahead, and
    the solves stop at the shortest prefix of materials proven within ``gap`` (``_ProvenPrefix``; the
    bound also keeps each material's maximum flow): decided by the inputs, whatever the lanes' timing.
    ``on_greedy`` (with ``stop_when_proven``) is called, in the caller's thread of this function, with
    the plan of every material on its greedy plan (``_greedy_plan_of``) as soon as those are made,
    while the lanes solve: a checked first plan for the anytime planner, made once."""
    t_all = time.perf_counter()
    sc = load_scenario(scenario)
    st = structure_of(sc)
    limited = st.has_min_lot or bool(st.limited_centres)
    if limited and open_arcs is None:
        raise ScenarioError("decomposition by material needs a scenario without min_lot and delivery limits, "
                            "or the open delivery arcs (open_arcs)")
    if limited:
        _refuse_open_arcs_over_limits(sc, open_arcs)
    n = numbers_of(sc)
    urg = compute_urgency(sc.materials, sc.theta)
    bound, spend = aggregate_relaxation(sc)
    bound_s = time.perf_counter() - t_all
    kept = np.flatnonzero(open_arcs.any(axis=1)) if limited else None  # arcs open in some period
    subs = material_subproblems(sc, material_budgets(sc, spend), keep_limits=limited,
                                delivery_arcs=None if kept is None else [st.delivery_arcs[i] for i in kept])
    # the bound that decides the stop keeps the network too (computed once the lanes have started)
    prefix = (_ProvenPrefix(bound, gap, lambda: _network_bounds(sc))
              if stop_when_proven and greedy_fallback and not limited else None)
    done = _solve_materials(sc, subs, t_all, time_limit_s, gap, progress, max_materials, greedy_fallback,
                            highs_options or {}, None if kept is None else open_arcs[kept], lanes, prefix, on_greedy)
    bound = bound if prefix is None else prefix.bound
    if not done.statuses and not done.greedy:
        return _no_plan(sc, n, urg, bound, done, time.perf_counter() - t_all)
    short, objective, bound, gap_v, shortages = _merged(sc, done.deliveries, bound)
    summary = summarise(sc, n, short, spent=_spent(sc, done.shipments)) | {
        "method": f"decomposition by material ({len(st.materials)} single-material MILPs"
                  f"{', delivery arcs fixed' if limited else ''}) + aggregate LP bound"
                  f"{NETWORK_NOTE if stop_when_proven and not limited else ''}",
        "bound_seconds": round(bound_s, 3), "material_statuses": {m: s.value for m, s in done.statuses.items()},
        "materials_solved": len(done.statuses), "materials_greedy": done.greedy,
        "stopped_by_clock": done.by_clock, "proven_after_materials": done.proven_after,
        "material_order": done.order}
    status = SolveStatus.OPTIMAL if gap_v <= gap and done.stopped is None else SolveStatus.FEASIBLE
    message = _message(status, done)
    return PlanResult(status=status, objective=objective, bound=bound, gap=gap_v,
                      solve_seconds=time.perf_counter() - t_all, build_seconds=done.build_s,
                      compile_seconds=done.compile_s, urgency=urg, shipments_in=tuple(done.shipments),
                      deliveries=tuple(done.deliveries), shortage=shortages, summary=summary, message=message)


def _network_bounds(sc: Scenario) -> tuple[float, np.ndarray]:
    """The aggregate bound keeping each material's maximum flow, and [M] an estimate of each material's
    least weighted shortage: the larger of its own maximum-flow bound (theta x the demand its maximum
    flow cannot deliver; ``optimizer.flow_bound``) and its part of the aggregate bound (which knows
    the budget). Simulated on province seeds 1-6, ordering by greedy objective less this proved
    10-14 materials against 11-14 with the maximum-flow bound alone."""
    deliverable = max_deliverable(sc)
    n = numbers_of(sc)
    own = n.theta * np.maximum(n.demand.sum(axis=(0, 2)) - deliverable, 0.0)
    bound, _, parts = _aggregate(sc, deliverable)
    return bound, np.maximum(own, parts)


def _merged(sc: Scenario, deliveries: list[Flow], bound: float) -> tuple[np.ndarray, float, float, float,
                                                                         tuple[Shortage, ...]]:
    """A merged plan's shortage [K, M, T], objective, bound (at most the objective), gap and shortage list."""
    st, n = structure_of(sc), numbers_of(sc)
    short = _shortage_of(sc, deliveries)
    objective = float(np.einsum("kmt,m->", short, n.theta))
    bound = min(bound, objective)
    gap_v = 0.0 if objective <= 1e-9 else (objective - bound) / objective
    shortages = tuple(Shortage(st.rescue_centres[k], st.materials[m], t + 1, float(short[k, m, t]))
                      for k, m, t in zip(*np.nonzero(short > 1e-9)))
    return short, objective, bound, gap_v, shortages


def _greedy_plan_of(sc: Scenario, plans: dict[int, tuple[list[Flow], list[Flow]]], bound: float, gap: float,
                    t_all: float) -> PlanResult:
    """Every material on its greedy plan buying ahead within its shares of the budget and the centres'
    capacity (``plans``: material -> its flows): a feasible plan of the whole scenario, since the
    shares only restrict. At province size the anytime planner's first plan: these greedy plans are
    made for the proven-prefix stop anyway, so the whole scenario's greedy plan is not made as well
    (1.0-1.5 s of Python beside the lanes)."""
    n = numbers_of(sc)
    ship = [f for mi in sorted(plans) for f in plans[mi][0]]
    dels = [f for mi in sorted(plans) for f in plans[mi][1]]
    short, objective, bound, gap_v, shortages = _merged(sc, dels, bound)
    return PlanResult(status=SolveStatus.OPTIMAL if gap_v <= gap else SolveStatus.FEASIBLE, objective=objective,
                      bound=bound, gap=gap_v, solve_seconds=time.perf_counter() - t_all, build_seconds=0.0,
                      compile_seconds=0.0, urgency=compute_urgency(sc.materials, sc.theta),
                      shipments_in=tuple(ship), deliveries=tuple(dels), shortage=shortages,
                      summary=summarise(sc, n, short, spent=_spent(sc, ship)) | {
                          "method": "greedy buying ahead, material by material within its shares"},
                      message="each material's greedy plan within its shares")


def _no_plan(sc: Scenario, n, urg, bound: float, done: "_Materials", seconds: float) -> PlanResult:
    return PlanResult(status=SolveStatus.NO_SOLUTION, objective=None, bound=bound, gap=None, solve_seconds=seconds,
                      build_seconds=done.build_s, compile_seconds=done.compile_s, urgency=urg,
                      summary=summarise(sc, n, None) | {"stopped_by_clock": done.by_clock},
                      message=done.stopped or "no material solved")


def _message(status: SolveStatus, done: "_Materials") -> str:
    if status is SolveStatus.OPTIMAL:
        return (f"proven within the gap after {done.proven_after} materials, the others greedy"
                if done.proven_after is not None else "proven within the gap (against the aggregate bound)")
    if done.stopped is None:
        return "a feasible plan; the gap to the aggregate bound is above the target"
    return f"{done.stopped}; " + ("the others follow the greedy plan" if done.greedy else "the others ship nothing")


@dataclasses.dataclass
class _Materials:
    """What the per-material solves produced so far."""

    shipments: list[Flow] = dataclasses.field(default_factory=list)
    deliveries: list[Flow] = dataclasses.field(default_factory=list)
    statuses: dict[str, SolveStatus] = dataclasses.field(default_factory=dict)  # solved materials only
    build_s: float = 0.0
    compile_s: float = 0.0
    stopped: str | None = None  # why not every material was solved
    greedy: list[str] = dataclasses.field(default_factory=list)  # materials whose greedy plan stands
    by_clock: bool = False  # the time limit (not the work limits) stopped a solve or the loop
    proven_after: int | None = None  # the proven prefix's length, when ``_ProvenPrefix`` stopped the solves
    order: list[str] = dataclasses.field(default_factory=list)  # the materials in the order they were solved in


class _ProvenPrefix:
    """The deterministic stop of the decomposition: the shortest prefix of the material order whose
    solved plans, with every other material's greedy plan, are within the gap of the aggregate bound.

    The merged objective is separable by material (each material's weighted shortage is its own
    single-material objective), so it is the sum of the solved materials' objectives and the greedy
    plans' objectives. Which prefix is chosen depends only on those per-material results, never on
    which lane finished first: a lane that solved past the prefix has its extra materials dropped."""

    def __init__(self, bound: float, gap: float,
                 stronger: Callable[[], tuple[float, np.ndarray]] | None = None):
        self.bound, self.gap, self.stronger = bound, gap, stronger
        self.greedy: dict[int, float] = {}  # material -> its greedy plan's objective (inf if it has none)
        self.floor: np.ndarray | None = None  # [M] each material's least shortage as estimated (``_network_bounds``)
        self.length: int | None = None
        self.event = threading.Event()  # set once a prefix is proven: the lanes start no further material

    def strengthen(self) -> None:
        """Raise the bound with ``stronger`` (called once, while the lanes solve): it gives the bound
        and each material's estimated least shortage (``_network_bounds``)."""
        if self.stronger is not None:
            bound, self.floor = self.stronger()
            self.bound = max(self.bound, bound)
            self.stronger = None

    def greedy_loss(self) -> np.ndarray:
        """[M] each material's greedy objective less its estimated least shortage (``_network_bounds``)."""
        loss = np.array([self.greedy.get(mi, 0.0) for mi in range(len(self.greedy))], dtype=float)
        return loss if self.floor is None else loss - self.floor[:len(loss)]

    def update(self, order: list[int], solved: dict[int, float]) -> None:
        """Look for the shortest proven prefix among the solved materials (``solved``: objectives)."""
        if self.length is not None or len(self.greedy) < len(order):
            return
        for k in range(len(order) + 1):
            if k and order[k - 1] not in solved:
                return
            total = sum(solved[mi] for mi in order[:k]) + sum(self.greedy[mi] for mi in order[k:])
            if total <= 1e-9 or (total - self.bound) / total <= self.gap * (1 - 1e-6):
                self.length = k
                self.event.set()
                return


def _solve_materials(sc: Scenario, subs: list[dict[str, Any]], t_all: float, time_limit_s: float, gap: float,
                     progress: Callable[[str], None], max_materials: int | None = None,
                     greedy_fallback: bool = False, highs_options: dict[str, Any] | None = None,
                     open_arcs: np.ndarray | None = None, lanes: int = 1,
                     prefix: "_ProvenPrefix | None" = None,
                     on_greedy: Callable[[PlanResult], None] | None = None) -> _Materials:
    """Solve the single-material scenarios, most at stake first, ``max_materials`` of them (None: all);
    with ``prefix`` the first ``ORDER_HEAD`` most at stake, then by greedy loss (``_Schedule``).

    ``lanes`` > 1: the materials are dealt to that many threads (``_deal``: lane i the i-th, the
    (i + lanes)-th ... of the order), each with its own compiled model and its own chain of LP bases;
    HiGHS releases the GIL while it solves, so on 2 cores two lanes solve two materials at once. The
    deal depends on the order and the count only, never on which thread finishes first, so the plan
    is the same whatever the timing (a fixed count, not the machine's cores).

    With ``greedy_fallback`` each material's greedy plan (within its share) stands for the materials
    not solved when the work limit or the time runs out; those left out by the work limit are known
    before the solves and planned while the lanes solve (Python beside HiGHS), the others after."""
    stake = material_order(sc)
    count = len(stake) if max_materials is None else min(max(max_materials, 0), len(stake))
    schedule = _Schedule(stake, count, lanes, seeded=prefix is not None,
                         head=ORDER_HEAD if prefix is not None else None)
    lane_runs = [_Lane(sc, subs, schedule, i, t_all, time_limit_s, gap, progress, highs_options, open_arcs,
                       None if prefix is None else prefix.event)
                 for i in range(len(schedule.positions))]
    loaded: dict[int, Scenario] = {}  # the single-material scenarios validated once for the lanes and the greedy
    for lane in lane_runs:
        lane.loaded = loaded
    if prefix is not None:  # the other lanes start from the first lane's first basis (``_Lane.seed``)
        for lane in lane_runs[1:]:
            lane.seed = lane_runs[0]
    # greedy plans known before the solves: those left out by the work limit, or with the proven-prefix
    # stop every material's (its objective decides the stop)
    early = stake if prefix is not None else stake[count:] if greedy_fallback else []
    fallback: dict[int, tuple[list[Flow], list[Flow]]] = {}
    if len(lane_runs) == 1 and prefix is None:
        lane_runs[0].run()
        return _merge_materials(sc, subs, schedule.order, lane_runs, fallback, greedy_fallback, open_arcs, prefix)
    pool = ThreadPoolExecutor(max_workers=len(lane_runs), thread_name_prefix="material-lane")
    try:
        futures = [pool.submit(lane.run) for lane in lane_runs]
        # while the lanes solve (HiGHS without the GIL), not after them
        plans = _early_greedy(sc, subs, early, loaded, open_arcs, lookahead=prefix is not None)
        for mi, (ship, dels, objective) in plans.items():
            fallback[mi] = (ship, dels)
            if prefix is not None:
                prefix.greedy[mi] = objective
        if prefix is not None:
            if on_greedy is not None:
                on_greedy(_greedy_plan_of(sc, fallback, prefix.bound, gap, t_all))
            prefix.strengthen()
            schedule.settle(prefix.greedy_loss())
            _watch(futures, lane_runs, schedule.order, prefix)
        if prefix is None or prefix.length is None:
            for future in futures:
                future.result()  # re-raises a lane's exception here
    finally:
        schedule.known.set()  # never leave a lane waiting for an order (the stake order stands then)
        # with a proven prefix the solves still running are past it (their results would be dropped):
        # not waited for
        pool.shutdown(wait=prefix is None or prefix.length is None)
    return _merge_materials(sc, subs, schedule.order, lane_runs, fallback, greedy_fallback, open_arcs, prefix)


#: With the proven-prefix stop, the materials after the first ORDER_HEAD (most at stake, so the lanes
#: start at once) are solved in the order of what their greedy plan loses against their estimated
#: least shortage (``_network_bounds``), largest first: the prefix proven is then shorter, since the
#: greedy plan is what stands for the rest. Simulated on the per-material optima of province seeds 1-6
#: (1 % gap): 12 / 13 / 13 / 10 / 14 / 10 materials against 13 / 13 / 14 / 13 / 14 / 13 by stake alone
#: (never more). A head of 3 proves as many, but lane 0 then waited 0.4 s for the order (the greedy
#: plans, their check and the maximum flows come first); 0 would save a material more on seed 1.
ORDER_HEAD = 4


class _Schedule:
    """The order of the materials and each lane's positions in it (``_deal``). With ``head``, the first
    ``head`` materials are the stake order's, known at once; the others wait for ``settle``, which
    orders them by a key made from the inputs only, so a lane that needs one of them waits for it and
    the plan stays a function of the inputs, whatever the timing."""

    def __init__(self, stake: list[int], count: int, lanes: int, seeded: bool, head: int | None = None):
        self.order = list(stake)
        self.head = len(stake) if head is None else min(head, len(stake))
        self.positions = _deal(list(range(count)), lanes, seeded)  # [lane] -> positions in the order
        self.known = threading.Event()  # set when the whole order is known
        if self.head >= len(stake):
            self.known.set()

    def settle(self, key: np.ndarray) -> None:
        """Order the materials after the head by ``key``, largest first (ties keep the stake order)."""
        rest = sorted(self.order[self.head:], key=lambda mi: -float(key[mi]))
        self.order = self.order[:self.head] + rest
        self.known.set()

    def material(self, lane: int, k: int) -> int | None:
        """Lane ``lane``'s k-th material (None: it has no more); past the head, once the order is known."""
        if k >= len(self.positions[lane]):
            return None
        p = self.positions[lane][k]
        if p >= self.head:
            self.known.wait()
        return self.order[p]


def _deal(todo: list[int], lanes: int, seeded: bool = False) -> list[list[int]]:
    """The materials of each lane: in turn (lane i: the i-th, the (i + lanes)-th ... of ``todo``), or
    with ``seeded`` (the other lanes wait for lane 0's first basis, ``_Lane.seed``) lane 0 takes the
    first TWO and the rest go in turn from lane 1: lane 0 is a material ahead when the others start,
    so a prefix of the order ends sooner (province seed 3, from one run's finishing times of the
    lanes: its first 14 materials done at 8.4 s instead of 9.1 s).
    A function of the order and the count only, never of which thread finishes first."""
    count = max(1, min(lanes, len(todo)))
    if not seeded or count == 1:
        return [todo[i::count] for i in range(count)]
    shares: list[list[int]] = [todo[:1]] + [[] for _ in range(count - 1)]
    for p, mi in enumerate(todo[1:]):
        shares[p % count].append(mi)
    return shares


def _watch(futures: list, lane_runs: list["_Lane"], order: list[int], prefix: "_ProvenPrefix") -> None:
    """Look for the proven prefix whenever a material is solved, until the lanes end."""
    pending = set(futures)
    while pending and prefix.length is None:
        _, pending = wait(pending, timeout=0.02, return_when=FIRST_COMPLETED)
        prefix.update(order, _solved_objectives(lane_runs))
    prefix.update(order, _solved_objectives(lane_runs))


def _solved_objectives(lane_runs: list["_Lane"]) -> dict[int, float]:
    return {mi: float(res.objective) for lane in lane_runs for mi, res in dict(lane.results).items()}


def _merge_materials(sc: Scenario, subs: list[dict[str, Any]], order: list[int], lane_runs: list["_Lane"],
                     fallback: dict[int, tuple[list[Flow], list[Flow]]], greedy_fallback: bool,
                     open_arcs: np.ndarray | None, prefix: "_ProvenPrefix | None") -> _Materials:
    """The solved materials' plans, most at stake first, and the greedy plans of the others."""
    st = structure_of(sc)
    done = _Materials(order=[st.materials[mi] for mi in order])
    scenarios: dict[int, Scenario] = {}
    for lane in lane_runs:
        scenarios |= lane.scenarios
        done.by_clock = done.by_clock or lane.by_clock
        done.build_s += lane.build_s
        done.compile_s += lane.compile_s
    results = {mi: res for lane in lane_runs for mi, res in lane.results.items()}
    if prefix is not None and prefix.length is not None:  # exactly the proven prefix, whatever else a lane solved
        done.proven_after = prefix.length
        results = {mi: results[mi] for mi in order[:prefix.length]}
    for mi in order:  # merged most at stake first, whichever lane solved it
        m = st.materials[mi]
        if mi in results:
            done.statuses[m] = results[mi].status
            done.shipments += results[mi].shipments_in  # of material m already (``_Lane._run``)
            done.deliveries += results[mi].deliveries
    failed = next((lane.failed for lane in lane_runs if lane.failed), None)
    if failed is not None and done.proven_after is None:
        done.stopped = failed
    elif len(results) < len(order) and done.proven_after is None:
        limit = "time" if done.by_clock else "work"
        done.stopped = f"{limit} limit reached after {len(results)} of {len(st.materials)} materials"
    if (done.stopped is not None or done.proven_after is not None) and greedy_fallback:
        for mi in order:  # greedy plans only for the materials left (deterministic: made from the inputs)
            if mi not in results:
                ship, dels = fallback.get(mi) or _greedy_flows(scenarios.get(mi) or load_scenario(subs[mi]),
                                                               st.materials[mi], open_arcs)
                done.shipments += ship
                done.deliveries += dels
                done.greedy.append(st.materials[mi])
    return done


def _renamed(res: PlanResult, material: str) -> PlanResult:
    """A single-material solve's result with its flows (of ``COMMON_ID``) of ``material``. Done in the
    lane as each material ends, not in the merge: at province size the merge renamed 160,000 flows
    after the last solve (0.8 s with ``dataclasses.replace``, 0.25 s built directly)."""
    def renamed(flows: tuple[Flow, ...]) -> tuple[Flow, ...]:
        return tuple(Flow(f.origin, f.destination, material, f.period, f.qty) for f in flows)
    return dataclasses.replace(res, shipments_in=renamed(res.shipments_in), deliveries=renamed(res.deliveries))


class _Lane:
    """One thread's share of the materials, solved one after the other on one compiled model."""

    def __init__(self, sc: Scenario, subs: list[dict[str, Any]], schedule: _Schedule, index: int, t_all: float,
                 time_limit_s: float, gap: float, progress: Callable[[str], None],
                 highs_options: dict[str, Any] | None, open_arcs: np.ndarray | None,
                 stop: threading.Event | None = None):
        self.sc, self.subs, self.t_all = sc, subs, t_all
        self.schedule, self.index = schedule, index  # this lane's materials: ``schedule.material(index, k)``
        self.stop = stop  # set when a proven prefix is found (``_ProvenPrefix``): start no further material
        self.progressed = threading.Event()  # set when the lane has solved its first material (or ended)
        # a lane whose first LP starts from ``seed``'s first final basis instead of a cold interior point
        # solve: at province size 0.5 s of warm primal simplex after waiting 1.2-1.7 s, against 1.2-1.9 s
        # of IPM run beside it, so about the same wall time for a third of the CPU (which the first
        # plan and a loaded machine need). The basis is a function of the inputs: so is the plan
        self.seed: _Lane | None = None
        self.first_basis: Any = None
        self.time_limit_s, self.gap, self.progress = time_limit_s, gap, progress
        self.highs_options, self.open_arcs = highs_options or {}, open_arcs
        self.results: dict[int, PlanResult] = {}
        self.scenarios: dict[int, Scenario] = {}
        self.loaded: dict[int, Scenario] = {}  # shared with the other lanes (``_solve_materials``)
        self.failed: str | None = None
        self.by_clock = False
        self.build_s = self.compile_s = 0.0

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.progressed.set()

    def _run(self) -> None:
        st = structure_of(self.sc)
        planner = None
        for k in itertools.count():
            mi = self.schedule.material(self.index, k)
            if mi is None or (self.stop is not None and self.stop.is_set()):
                return
            m = st.materials[mi]
            remaining = self.time_limit_s - (time.perf_counter() - self.t_all)
            if remaining <= 0:
                self.by_clock = True
                return
            self.progress(f"material {m}: limit {remaining:.1f} s")
            sub = self.scenarios[mi] = self.loaded.get(mi) or self.loaded.setdefault(mi, load_scenario(self.subs[mi]))
            if planner is None:
                planner = Planner(sub)
                if self.seed is not None:
                    self.compile_s += _compile_ahead(planner, sub)
                    self.seed.progressed.wait()
                    planner.start_lp_from(self.seed.first_basis)
            # each material may use all the time left (the total is what is bounded); primal simplex:
            # shipping nothing is feasible, and on these single-material models HiGHS's root LP was ~4x
            # faster with it (36.8 s -> 9.7 s on a province material). The first LP has no basis to start
            # from: there the interior point method (with crossover, so the next LP gets a basis) took
            # 1.7-1.9 s against primal simplex's 4.1-4.2 s in the same run (province, load average 8)
            res = planner.solve(sub, time_limit_s=remaining, gap=self.gap / 4, prefer_fewer_arcs=False,
                                highs_options={"simplex_strategy": 4, **self.highs_options},
                                cold_lp_options={"solver": "ipm"}, open_arcs=self.open_arcs)
            self.by_clock = self.by_clock or res.summary.get("solver_status") == "time_limit"
            self.build_s += res.build_seconds
            self.compile_s += res.compile_seconds
            if not res.has_plan:
                self.failed = f"material {m} ended {res.status.value}: {res.message}"
                return
            if self.first_basis is None:
                self.first_basis = planner.lp_basis
            self.progressed.set()  # the other lanes may start from the basis while this one renames
            self.results[mi] = _renamed(res, m)


def _compile_ahead(planner: Planner, sub: Scenario) -> float:
    """CVXPY's first compile of the structure (0.1-0.3 s at province size, later ones 0.01 s), made while
    the lane waits for lane 0's first basis rather than after it; returns its seconds. The same model
    either way."""
    planner.formulation.set_numbers(numbers_of(sub))
    return planner.stage1.compile().seconds


def _refuse_open_arcs_over_limits(sc: Scenario, open_arcs: np.ndarray) -> None:
    """A ``ScenarioError`` unless ``open_arcs`` is [delivery arcs, periods] with at most each limited
    centre's limit open per period (else the merged plan could break the limit)."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    if open_arcs.shape != (ix.nd, ix.T):
        raise ScenarioError(f"open_arcs has shape {open_arcs.shape}, expected {(ix.nd, ix.T)}")
    for j in ix.limited:
        per_t = open_arcs[ix.d_j == j].sum(axis=0)
        if np.any(per_t > n.max_deliveries[j]):
            raise ScenarioError(f"open_arcs opens {int(per_t.max())} delivery arcs of distribution centre "
                                f"{structure_of(sc).distribution_centres[j]} in a period, its limit is "
                                f"{int(n.max_deliveries[j])}")


def _greedy_flows(sub: Scenario, material: str, allowed: np.ndarray | None = None) -> tuple[list[Flow], list[Flow]]:
    """The greedy plan of one single-material scenario as flows of ``material`` (none if the greedy
    rules fail: the material then ships nothing, which its share allows); ``allowed``: the delivery
    arcs it may use."""
    ship, dels, _ = _greedy_material(sub, material, allowed)
    return ship, dels


def _greedy_material(sub: Scenario, material: str, allowed: np.ndarray | None = None,
                     lookahead: bool = False) -> tuple[list[Flow], list[Flow], float]:
    """``_greedy_flows`` and the plan's objective (weighted shortage; all of the demand when the greedy
    rules fail and the material ships nothing)."""
    g = greedy_plan(sub, allowed, lookahead=lookahead)
    if not g.feasible:
        n = numbers_of(sub)
        return [], [], float(np.einsum("kmt,m->", n.demand, n.theta))
    st = structure_of(sub)
    ix = Index(st)
    ship = _material_flows(g.shipped[:, 0, :], np.asarray(st.supply_sites, dtype=object)[ix.s_w],
                           np.asarray(st.distribution_centres, dtype=object)[ix.s_j], material)
    dels = _material_flows(g.delivered[:, 0, :], np.asarray(st.distribution_centres, dtype=object)[ix.d_j],
                           np.asarray(st.rescue_centres, dtype=object)[ix.d_k], material)
    return ship, dels, float(g.objective)


def _early_greedy(sc: Scenario, subs: list[dict[str, Any]], early: list[int], loaded: dict[int, Scenario],
                  open_arcs: np.ndarray | None, lookahead: bool) -> dict[int, tuple[list[Flow], list[Flow], float]]:
    """The greedy plans of the materials in ``early`` (flows and objective each): all of them buying
    ahead in one pass (``_greedy_by_material``) when that is asked, else each on its own scenario
    (validated into ``loaded``, which the lanes share)."""
    if lookahead and open_arcs is None and len(early) == len(subs):
        plans = _greedy_by_material(sc, subs)
        if plans is not None:
            return plans
    out = {}
    for mi in early:
        loaded[mi] = loaded.get(mi) or load_scenario(subs[mi])
        out[mi] = _greedy_material(loaded[mi], structure_of(sc).materials[mi], open_arcs, lookahead=lookahead)
    return out


def _greedy_by_material(sc: Scenario,
                        subs: list[dict[str, Any]]) -> dict[int, tuple[list[Flow], list[Flow], float]] | None:
    """Every material's greedy plan buying ahead within its shares (``_greedy_material`` of each
    single-material scenario in ``subs``), made in ONE greedy pass over the whole scenario with the
    shares as per-material budgets and stock caps: each material's purchases and deliveries are then
    its own plan's (the shares sum to at most the budget and each centre's capacity, so neither binds
    across materials), without validating 20 single-material scenarios first (0.4 s at province size).
    None if the greedy rules fail for some material (then each is made on its own)."""
    budgets = np.array([sub.get("budget", np.inf) for sub in subs], dtype=float)
    g = greedy_plan(sc, lookahead=True, budgets=budgets, caps=capacity_shares(sc))
    if not g.feasible:
        return None
    st, n = structure_of(sc), numbers_of(sc)
    ix = Index(st)
    sites, centres = np.asarray(st.supply_sites, dtype=object), np.asarray(st.distribution_centres, dtype=object)
    rescue = np.asarray(st.rescue_centres, dtype=object)
    out = {}
    for mi, m in enumerate(st.materials):
        ship = _material_flows(g.shipped[:, mi, :], sites[ix.s_w], centres[ix.s_j], m)
        dels = _material_flows(g.delivered[:, mi, :], centres[ix.d_j], rescue[ix.d_k], m)
        # summed as the single-material scenario's own objective is (contiguous [K, 1, T]): the same float
        short = np.ascontiguousarray(g.shortage[:, mi:mi + 1, :])
        out[mi] = (ship, dels, float(np.einsum("kmt,m->", short, n.theta[mi:mi + 1])))
    return out


def _material_flows(qty: np.ndarray, origin: np.ndarray, destination: np.ndarray, material: str) -> list[Flow]:
    """Flows of one material's [arcs, T] quantities (whole units above 0.5), names looked up per arc in
    bulk (per-flow numpy indexing was a third of a province material's greedy plan time)."""
    a, t = np.nonzero(qty > 0.5)
    return [Flow(o, d, material, p, q) for o, d, p, q in zip(origin[a].tolist(), destination[a].tolist(),
                                                             (t + 1).tolist(), qty[a, t].astype(float).tolist())]


def _shortage_of(sc: Scenario, deliveries: list[Flow]) -> np.ndarray:
    """[K, M, T] unmet demand after the deliveries."""
    st, n = structure_of(sc), numbers_of(sc)
    mpos = {m: i for i, m in enumerate(st.materials)}
    kpos = {k: i for i, k in enumerate(st.rescue_centres)}
    got = np.zeros_like(n.demand)
    for f in deliveries:
        got[kpos[f.destination], mpos[f.material], f.period - 1] += f.qty
    return np.maximum(n.demand - got, 0.0)


def _spent(sc: Scenario, shipments: list[Flow]) -> float:
    st, n = structure_of(sc), numbers_of(sc)
    mpos = {m: i for i, m in enumerate(st.materials)}
    wpos = {w: i for i, w in enumerate(st.supply_sites)}
    return float(sum(f.qty * n.price[wpos[f.origin], mpos[f.material], f.period - 1] for f in shipments))
