"""The multi-period dispatch MILP in CVXPY, compiled once per structure and re-solved by parameters.

Formulation (the fast form measured in the issue):
- Primary: minimise sum theta_m * s[k,m,t] with the shortage substituted out: sum_j y <= D and
  s = D - sum_j y, so the solver minimises theta.D - theta.y. The constant theta.D enters through a
  column fixed at 1, so the solver's relative gap IS the gap on the primary objective.
- Receipts of period t are deliverable from t+1: sum_k y[j,m,t] <= I[j,m,t-1].
- Arc binaries only where a constraint needs them (max deliveries, minimum lot), linked by
  aggregated rows sum_m y[d,m,t] <= U[d,t] b[d,t] with the tightest simple U.
- The arc-count preference is a SECOND, time-bounded stage that keeps the primary at its stage-one
  value (never trading shortage), warm-started from the stage-one plan.

The solver is HiGHS, called on the data CVXPY compiles (``Problem.get_problem_data``, cached with the
DPP parameter map), so we control the time limit, the warm start and read the dual bound and the
primal solution status ourselves: a time limit without an incumbent is ``no_solution``, never zeros.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.index import Index, Numbers, check_same_structure, numbers_of, structure_of
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario, ScenarioError, load_scenario
from optimizer.urgency import urgency as compute_urgency

log = logging.getLogger(__name__)

SUPPORTED_SOLVERS = ("HIGHS",)


@dataclass
class _Solved:
    """Raw outcome of one HiGHS run on compiled data."""

    model_status: str
    has_solution: bool
    values: dict[int, np.ndarray]  # cvxpy variable id -> values
    objective: float | None
    dual_bound: float | None
    seconds: float
    compile_seconds: float


class _Stage:
    """One CVXPY problem with its cached compilation."""

    def __init__(self, problem):
        self.problem = problem
        self.compiled_once = False

    def compile(self) -> tuple[dict, float]:
        t0 = time.perf_counter()
        data, _chain, _inv = self.problem.get_problem_data("HIGHS", enforce_dpp=True)
        self.compiled_once = True
        return data, time.perf_counter() - t0

    def param_prog(self):
        return self.problem._cache.param_prog  # cvxpy's cached parameter->data map (None = not compiled)


def _run_highs(data: dict, *, time_limit_s: float, gap: float, start: dict[int, np.ndarray] | None = None,
               threads: int | None = None, options: dict[str, Any] | None = None, relax: bool = False,
               col_bounds: tuple[np.ndarray, np.ndarray] | None = None, basis=None, extra: dict | None = None,
               on_event=None) -> tuple[str, bool, np.ndarray | None, float | None, float | None, float]:
    """Solve compiled CVXPY data (min c x s.t. A_eq x = b_eq, A_ineq x <= b_ineq, bounds) with HiGHS.

    Returns (model status name, has a primal solution, column values, objective, dual bound, seconds).
    With ``relax`` the integrality is dropped: the LP relaxation, whose optimum is a valid bound.
    ``col_bounds`` (lower, upper) tighten the column bounds (a restricted problem, e.g. RENS).
    ``basis``: a HiGHS basis of a model with the same shape to start the simplex from; the final
    basis is put in ``extra["basis"]`` when ``extra`` is given. ``on_event(kind, objective, dual
    bound)`` is called on every improving MIP solution ("improving") and MIP log line ("progress"):
    the benchmark records HiGHS's gap over time with it.
    """
    import highspy as hp
    from cvxpy.reductions.solvers.conic_solvers.conic_solver import dims_to_solver_dict
    import cvxpy.settings as s

    h = hp.Highs()
    inf = h.inf
    dims = dims_to_solver_dict(data[s.DIMS])
    c = data[s.C]
    A = data[s.A].tocsc()
    n_eq, n_leq = dims[s.EQ_DIM], dims[s.LEQ_DIM]
    ub = data[s.B]
    lb = np.concatenate([ub[:n_eq], np.full(n_leq, -inf)])
    model = hp.HighsModel()
    lp = model.lp_
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.offset_ = 0.0
    lp.col_cost_ = c
    lp.row_lower_, lp.row_upper_ = lb, ub
    lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
    col_lower = np.full(lp.num_col_, -inf) if data[s.LOWER_BOUNDS] is None else data[s.LOWER_BOUNDS].copy()
    col_upper = np.full(lp.num_col_, inf) if data[s.UPPER_BOUNDS] is None else data[s.UPPER_BOUNDS].copy()
    integer_cols = [] if relax else list(data[s.BOOL_IDX]) + list(data[s.INT_IDX])
    if data[s.BOOL_IDX]:  # binaries keep their [0, 1] bounds in the relaxation too
        bi = np.array(data[s.BOOL_IDX], dtype=int)
        col_lower[bi] = np.maximum(col_lower[bi], 0)
        col_upper[bi] = np.minimum(col_upper[bi], 1)
    if integer_cols:
        kinds = np.zeros(lp.num_col_, dtype=np.uint8)
        kinds[np.array(integer_cols, dtype=int)] = 1
        integ = hp.HighsVarType.kInteger
        cont = hp.HighsVarType.kContinuous
        lp.integrality_ = [integ if k else cont for k in kinds]
    if col_bounds is not None:
        col_lower = np.maximum(col_lower, col_bounds[0])
        col_upper = np.minimum(col_upper, col_bounds[1])
    lp.col_lower_, lp.col_upper_ = col_lower, col_upper
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(max(time_limit_s, 1e-3)))
    h.setOptionValue("mip_rel_gap", float(gap))
    if relax:
        # Primal simplex: shipping nothing is (usually) feasible, and on these network-like LPs HiGHS's
        # default dual simplex was 5-10x slower (city: > 60 s vs 5 s); "choose" may pick a stalling IPM.
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", 4)
    if threads:
        h.setOptionValue("threads", int(threads))
    for key, value in (options or {}).items():
        if h.setOptionValue(key, value) == hp.HighsStatus.kError:
            raise ScenarioError(f"HiGHS rejected option {key}={value!r}")
    h.passModel(model)
    if on_event is not None:
        h.cbMipImprovingSolution.subscribe(
            lambda e: on_event("improving", e.data_out.objective_function_value, e.data_out.mip_dual_bound))
        h.cbMipLogging.subscribe(
            lambda e: on_event("progress", e.data_out.objective_function_value, e.data_out.mip_dual_bound))
    if basis is not None:
        try:
            h.setBasis(basis)
        except Exception:  # a basis that does not fit is only a lost speed-up
            pass
    if start is not None:
        sol = hp.HighsSolution()
        sol.col_value = list(start)
        sol.value_valid = True
        h.setSolution(sol)
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    status = h.getModelStatus().name
    info = h.getInfo()
    if extra is not None and status == "kOptimal":
        extra["basis"] = h.getBasis()
    has = (status == "kOptimal" or int(info.primal_solution_status) == 2)
    values = np.array(h.getSolution().col_value) if has else None
    objective = float(info.objective_function_value) if has else None
    bound = None
    if integer_cols:
        db = float(info.mip_dual_bound)
        bound = db if np.isfinite(db) else None
    elif status == "kOptimal":
        bound = objective
    return status, has, values, objective, bound, seconds


ARC_STAGE_EFFORT = 2.0  # the fewer-arcs stage may spend this many times the primary solve's wall time
ARC_STAGE_MIN_S = 0.5  # ... but at least this long (s), so tiny models get a real try


def arc_stage_limit(primary_seconds: float, time_limit_s: float, arc_time_limit_s: float | None) -> float:
    """Time limit of the secondary (fewer-arcs) stage, s: bounded by the primary solve's effort.

    A secondary preference must never cost more than the plan itself: before this bound the default
    was min(15 s, limit / 4), and ``vreserve plan wuhan`` spent 15 s there after a 0.2 s primary solve.
    """
    if arc_time_limit_s is not None:
        return max(float(arc_time_limit_s), 1e-3)
    return min(max(ARC_STAGE_EFFORT * primary_seconds, ARC_STAGE_MIN_S), max(time_limit_s / 4, ARC_STAGE_MIN_S))


def _split(param_prog, values: np.ndarray) -> dict[int, np.ndarray]:
    out = {}
    for var in param_prog.variables:
        off = param_prog.var_id_to_col[var.id]
        out[var.id] = values[off:off + var.size]
    return out


def _columns(param_prog, by_var: dict[int, np.ndarray]) -> np.ndarray:
    """Column vector for a warm start from values per variable id."""
    x = np.zeros(param_prog.x.size)
    for var in param_prog.variables:
        off = param_prog.var_id_to_col[var.id]
        x[off:off + var.size] = by_var[var.id]
    return x


class Planner:
    """A compiled model for one scenario STRUCTURE; ``solve`` takes new numbers without recompiling.

    >>> planner = Planner(scenario)
    >>> result = planner.solve(scenario_with_new_numbers, time_limit_s=10)
    """

    def __init__(self, scenario: "Scenario | str | dict", *, canon_backend: str | None = None):
        import cvxpy as cp

        sc = load_scenario(scenario)
        t0 = time.perf_counter()
        self.structure = structure_of(sc)
        ix = self.index = Index(self.structure)
        M, T, J = ix.M, ix.T, ix.J
        self.canon_backend = canon_backend
        P = {}  # parameters by name

        def param(name, shape):
            P[name] = cp.Parameter(shape, name=name, nonneg=True)
            return P[name]

        x = cp.Variable(ix.n_x, integer=True, bounds=[0, None], name="x")
        y = cp.Variable(ix.n_y, integer=True, bounds=[0, None], name="y")
        inv = cp.Variable(ix.n_i, bounds=[0, None], name="I")
        one = cp.Variable(name="one")
        self.x, self.y, self.inv, self.one = x, y, inv, one
        prev = ix.lag @ inv + ix.at_start @ param("initial", J * M)
        cons = [
            one == 1,
            inv == prev - ix.issues @ y + ix.receipts @ x,
            ix.issues @ y <= prev,
            ix.delivered @ y <= param("demand", ix.K * M * T),
            ix.supply_rows @ x <= param("supply", ix.W * M * T),
            inv >= param("safety", ix.n_i),
            inv <= param("max_inventory", ix.n_i),
            ix.stock_rows @ inv <= param("capacity", J * T),
        ]
        if self.structure.has_on_hand:
            cons.append(ix.on_hand_rows @ x <= param("on_hand", ix.W * M))
        if self.structure.has_budget:
            # scaled (see _set_numbers) for the solver's numerics
            cons.append(param("price_x", ix.n_x) @ x <= param("budget", ()))
        need_b = self.structure.has_min_lot or len(ix.limited) > 0
        self.b = None
        link_b = []
        if need_b:
            b = self.b = cp.Variable(ix.nd * T, boolean=True, name="b")
            link_b = [ix.arc_y @ y <= cp.multiply(param("delivery_bound", ix.nd * T), b),
                      b <= param("b_open", ix.nd * T)]  # 1 = may be used; 0 closes an arc (LP-guided start)
            cons += link_b
            if self.structure.has_min_lot:
                cons.append(ix.arc_y @ y >= param("min_lot", ()) * b)
            if len(ix.limited):
                cons.append(ix.deliveries_per_centre @ b <= param("max_deliveries", len(ix.limited) * T))
        primary = param("theta_demand", ()) * one - param("theta_y", ix.n_y) @ y
        self.primary_expr = primary
        self.params = P
        self.stage1 = _Stage(cp.Problem(cp.Minimize(primary), cons))

        # Stage two: fewest arcs used with the primary kept at its stage-one value.
        a = self.a = cp.Variable(ix.ns * T, boolean=True, name="a")
        b2 = self.b if need_b else cp.Variable(ix.nd * T, boolean=True, name="b")
        self.b2 = b2
        cons2 = list(cons)
        cons2.append(ix.arc_x @ x <= cp.multiply(param("supply_bound", ix.ns * T), a))
        if not need_b:
            cons2.append(ix.arc_y @ y <= cp.multiply(P["delivery_bound"] if "delivery_bound" in P else
                                                     param("delivery_bound", ix.nd * T), b2))
        # Keep every rescue centre's deliveries at the stage-one plan's: the primary objective is then
        # exactly unchanged (no tolerance), and the problem is much easier than a single objective row.
        cons2.append(ix.delivered @ y == P.setdefault("delivered_target", cp.Parameter(ix.K * M * T, name="delivered_target")))
        self.stage2 = _Stage(cp.Problem(cp.Minimize(cp.sum(a) + cp.sum(b2)), cons2))
        self.build_seconds = time.perf_counter() - t0
        self.last_shape: tuple[int, int] | None = None
        self._lp_basis = None  # final simplex basis of the last LP relaxation (a warm start for the next)

    # --- numbers -> parameters ---------------------------------------------------------------------

    def _set_numbers(self, n: Numbers) -> None:
        ix, P = self.index, self.params
        P["initial"].value = n.initial.reshape(-1)
        P["demand"].value = ix.demand_vec(n)
        P["supply"].value = ix.supply_vec(n)
        if "on_hand" in P:
            P["on_hand"].value = n.on_hand.reshape(-1)
        P["safety"].value = ix.per_period(n.safety)
        P["max_inventory"].value = ix.per_period(n.max_inventory)
        P["capacity"].value = np.repeat(n.capacity, ix.T)
        if "budget" in P:
            px = ix.price_x(n)
            pos = px[px > 0]
            # divide the row by the geometric mean of the prices: coefficients around 1 (not 1e-6)
            scale = float(np.exp(np.log(pos).mean())) if pos.size else 1.0
            P["budget"].value = float(n.budget) / scale
            P["price_x"].value = px / scale
        if "delivery_bound" in P:
            P["delivery_bound"].value = ix.delivery_bound(n)
        if "b_open" in P:
            P["b_open"].value = np.ones(ix.nd * ix.T)
        if "min_lot" in P:
            P["min_lot"].value = float(n.min_lot)
        if "max_deliveries" in P:
            P["max_deliveries"].value = ix.max_deliveries_vec(n)
        P["supply_bound"].value = ix.supply_bound(n)
        P["theta_y"].value = ix.theta_y(n)
        P["theta_demand"].value = ix.theta_demand(n)
        P["delivered_target"].value = np.zeros(ix.K * ix.M * ix.T)

    # --- solve -------------------------------------------------------------------------------------

    def solve(self, scenario: "Scenario | str | dict", *, time_limit_s: float = 60.0, gap: float = 1e-3,
              solver: str = "HIGHS", prefer_fewer_arcs: bool = False, arc_time_limit_s: float | None = None,
              warm_start: "PlanResult | None" = None, threads: int | None = None,
              highs_options: dict[str, Any] | None = None, method: str = "lp-rens",
              reuse_basis: bool = True, open_arcs: np.ndarray | None = None) -> PlanResult:
        """Solve the compiled model with the numbers of ``scenario`` (same structure, else ScenarioError).

        method: "lp-rens" (default) solves the LP relaxation first (a proven bound), then the MILP
        restricted to the integers around the LP solution (RENS), and only if that plan is not
        within ``gap`` of the bound the full MILP warm-started from it; models with arc binaries use
        the LP-guided arc restriction instead. "milp" runs HiGHS on the full MILP directly (measured
        slower: city re-plan 57 s vs 5.6 s, paper 0.2-0.7 s vs 0.03 s).

        time_limit_s bounds the primary solve. The fewer-arcs stage runs only with
        ``prefer_fewer_arcs=True`` (off by default: on the Wuhan pack it ran to its 15 s limit after a
        0.2 s primary solve); its limit is ``arc_time_limit_s`` or, by default, ARC_STAGE_EFFORT times
        the primary solve's wall time (at least ARC_STAGE_MIN_S, at most a quarter of time_limit_s).

        reuse_basis=False starts the LP from scratch instead of from the last solve's simplex basis:
        slower, but the plan is then a function of the numbers alone (a degenerate LP has many optimal
        vertices, and which one a warm start lands on depends on history). The dispatcher needs that, so
        that a restarted process re-derives the very orders a clean run would have published.

        open_arcs ([delivery arcs, periods] booleans; models with arc binaries only): a fix-and-optimize
        neighbourhood. Only these delivery arcs may be used (the delivery limits still apply among
        them) and the MILP is solved directly, without the LP relaxation, from ``warm_start`` if given.
        """
        if not reuse_basis:
            self._lp_basis = None
        if solver.upper() not in SUPPORTED_SOLVERS:
            raise ScenarioError(f"solver {solver!r} not supported here (supported: {', '.join(SUPPORTED_SOLVERS)})")
        if method not in ("lp-rens", "milp"):
            raise ScenarioError(f"unknown method {method!r} (lp-rens, milp)")
        sc = load_scenario(scenario)
        check_same_structure(self.structure, sc)
        n = numbers_of(sc)
        urg = compute_urgency(sc.materials, sc.theta)
        build = self.build_seconds
        self.build_seconds = 0.0  # reported once, by the first solve
        self._set_numbers(n)
        if open_arcs is not None:
            if self.b is None:
                raise ScenarioError("open_arcs needs a model with arc binaries (min lot or delivery limits)")
            self.params["b_open"].value = np.asarray(open_arcs, dtype=float).reshape(-1)
        data, compile_s = self.stage1.compile()
        self.last_shape = data["A"].shape  # (rows, variables) of the primary model as passed to HiGHS
        pp = self.stage1.param_prog()
        start = None
        if warm_start is not None and warm_start.has_plan:
            start = _columns(pp, self._values_from_result(warm_start))
        summary_extra: dict[str, Any] = {"solver": "HiGHS"}
        t_start = time.perf_counter()
        if open_arcs is not None:
            status, has, cols, obj, bound, secs = _run_highs(data, time_limit_s=time_limit_s, gap=gap, start=start,
                                                              threads=threads,
                                                              options={"presolve": "off", **(highs_options or {})})
            summary_extra["method"] = "MILP on a neighbourhood of open arcs" + (" (warm start)" if start is not None else "")
            bound = None  # a bound of the restricted problem is no bound of the scenario
        elif self.b is None and start is None and method == "lp-rens":
            status, has, cols, bound, notes = self._lp_rens(data, time_limit_s=time_limit_s, gap=gap,
                                                            threads=threads, options=highs_options)
            summary_extra |= notes
        elif self.b is not None and start is None and method != "milp":
            status, has, cols, bound, compile_more, notes = self._lp_guided(
                data, time_limit_s=time_limit_s, gap=gap, threads=threads, options=highs_options)
            compile_s += compile_more
            summary_extra |= notes
        else:
            status, has, cols, obj, bound, secs = _run_highs(data, time_limit_s=time_limit_s, gap=gap, start=start,
                                                              threads=threads, options=highs_options)
            summary_extra["method"] = "MILP" + (" (warm start)" if start is not None else "")
        solve_s = time.perf_counter() - t_start
        summary_extra["solver_status"] = status
        if not has:
            if status in ("kInfeasible", "kUnboundedOrInfeasible"):
                from optimizer.diagnose import diagnose_infeasibility
                msgs = diagnose_infeasibility(sc, n, self.index)
                return PlanResult(status=SolveStatus.INFEASIBLE, objective=None, bound=None, gap=None,
                                  solve_seconds=solve_s, build_seconds=build, compile_seconds=compile_s,
                                  urgency=urg, summary=self._demand_summary(sc, n) | summary_extra,
                                  infeasibility=tuple(msgs), message="the constraints admit no plan")
            why = "time limit reached without a plan" if status == "kTimeLimit" else f"solver stopped: {status}"
            return PlanResult(status=SolveStatus.NO_SOLUTION, objective=None,
                              bound=None if bound is None else max(bound, 0.0), gap=None,
                              solve_seconds=solve_s, build_seconds=build, compile_seconds=compile_s, urgency=urg,
                              summary=self._demand_summary(sc, n) | summary_extra, message=why)
        vals = _split(pp, cols)
        xv, yv = np.rint(vals[self.x.id]), np.rint(vals[self.y.id])
        primary = self._primary(n, yv)
        proven = status == "kOptimal" and open_arcs is None  # a restricted optimum proves nothing
        bound_v = 0.0 if bound is None else max(float(bound), 0.0)
        bound_v = min(bound_v, primary)
        arcs_info: dict[str, Any] = {"arcs_used_stage1": self._arcs_used(xv, yv)}
        if prefer_fewer_arcs:
            limit2 = arc_stage_limit(solve_s, time_limit_s, arc_time_limit_s)
            x2, y2, info2, secs2, comp2 = self._arc_stage(n, vals, primary, limit2, threads)
            solve_s += secs2
            compile_s += comp2
            arcs_info |= info2
            if x2 is not None and self._primary(n, y2) <= primary + 1e-9 * max(1.0, primary):
                xv, yv = x2, y2
                primary = min(primary, self._primary(n, yv))
        arcs_info["arcs_used"] = self._arcs_used(xv, yv)
        gap_v = 0.0 if primary <= 1e-9 else max(0.0, (primary - bound_v) / primary)
        return self._result(sc, n, urg, SolveStatus.OPTIMAL if proven else SolveStatus.FEASIBLE, primary, bound_v,
                            gap_v, solve_s, build, compile_s, xv, yv, summary_extra | arcs_info,
                            message="proven within the gap" if proven else f"stopped ({status}) with a plan")

    def _lp_rens(self, data: dict, *, time_limit_s: float, gap: float, threads: int | None,
                 options: dict[str, Any] | None):
        """LP bound, then RENS (integers bounded to floor/ceil of their LP values), then the full MILP
        warm-started from the RENS plan if the gap is not yet proven. Returns like ``_lp_guided``."""
        import cvxpy.settings as s

        deadline = time.perf_counter() + time_limit_s
        notes: dict[str, Any] = {"method": "LP bound + RENS rounding"}
        extra: dict[str, Any] = {}
        status, has, cols, lp_obj, _lb, secs = _run_highs(data, time_limit_s=time_limit_s, gap=gap,
                                                           threads=threads, options=options, relax=True,
                                                           basis=self._lp_basis, extra=extra)
        notes["lp_seconds"] = round(secs, 3)
        notes["lp_warm_basis"] = self._lp_basis is not None
        self._lp_basis = extra.get("basis")  # the next solve of this structure starts from it
        if status in ("kInfeasible", "kUnboundedOrInfeasible") or status != "kOptimal":
            return status, False, None, None, notes
        integer = np.zeros(len(cols), dtype=bool)
        integer[np.array(list(data[s.BOOL_IDX]) + list(data[s.INT_IDX]), dtype=int)] = True
        lower = np.where(integer, np.floor(cols + 1e-6), -np.inf)
        upper = np.where(integer, np.ceil(cols - 1e-6), np.inf)
        notes["fractional_integers"] = int((integer & (upper > lower)).sum())
        remaining = max(deadline - time.perf_counter(), 0.05)
        st_r, has_r, cols_r, obj_r, _b, secs_r = _run_highs(data, time_limit_s=remaining, gap=gap, threads=threads,
                                                            options=options, col_bounds=(lower, upper))
        notes["rens_seconds"] = round(secs_r, 3)
        if has_r and obj_r is not None:
            inc_gap = 0.0 if obj_r <= 1e-9 else (obj_r - lp_obj) / max(abs(obj_r), 1e-9)
            if inc_gap <= gap:
                notes["proven_by"] = "RENS plan within gap of the LP bound"
                return "kOptimal", True, cols_r, lp_obj, notes
        remaining = deadline - time.perf_counter()
        if remaining <= 0.05:
            return ("kTimeLimit", True, cols_r, lp_obj, notes) if has_r else ("kTimeLimit", False, None, lp_obj, notes)
        st, has, cols, obj, bound, secs = _run_highs(data, time_limit_s=remaining, gap=gap,
                                                     start=cols_r if has_r else None, threads=threads, options=options)
        notes["full_milp_seconds"] = round(secs, 3)
        if not has and has_r:
            return "kTimeLimit", True, cols_r, lp_obj, notes
        best = lp_obj if bound is None else max(lp_obj, bound)
        return st, has, cols, best, notes

    def _lp_guided(self, data: dict, *, time_limit_s: float, gap: float, threads: int | None,
                   options: dict[str, Any] | None):
        """Primary solve when arc binaries exist (max deliveries, min lot).

        The LP relaxation is usually tight here, but HiGHS struggles to find an integer plan that
        respects the per-centre delivery limits. So: (1) solve the LP relaxation (a proven bound);
        (2) keep, per centre and period, only the arcs the LP uses most (at most the limit) and solve
        that restricted MILP briefly (an incumbent); (3) if the incumbent is within ``gap`` of the LP
        bound, it is proven; else run the full MILP warm-started from it for the remaining time.
        """
        ix, P = self.index, self.params
        deadline = time.perf_counter() + time_limit_s
        notes: dict[str, Any] = {"method": "LP bound + LP-guided arc restriction"}
        status, has, cols, lp_obj, lp_bound, secs = _run_highs(data, time_limit_s=time_limit_s, gap=gap,
                                                                threads=threads, options=options, relax=True)
        notes["lp_seconds"] = round(secs, 3)
        if status in ("kInfeasible", "kUnboundedOrInfeasible"):
            return status, False, None, None, 0.0, notes
        if status != "kOptimal":
            return status, False, None, None, 0.0, notes
        pp = self.stage1.param_prog()
        vals = _split(pp, cols)
        flow = (ix.arc_y @ np.maximum(vals[self.y.id], 0.0)).reshape(ix.nd, ix.T)
        open_ = flow > 1e-6
        limits = ix.index_limits(P["max_deliveries"].value.reshape(-1, ix.T)) if "max_deliveries" in P else {}
        for j, cap in limits.items():  # centre j: keep its top-cap arcs per period
            arcs = np.flatnonzero(ix.d_j == j)
            for t in range(ix.T):
                used = arcs[open_[arcs, t]]
                if len(used) > cap[t]:
                    keep = used[np.argsort(-flow[used, t])[:int(cap[t])]]
                    open_[used, t] = False
                    open_[keep, t] = True
        P["b_open"].value = open_.reshape(-1).astype(float)
        t0 = time.perf_counter()
        data_r, comp = self.stage1.compile()
        remaining = max(deadline - time.perf_counter(), 0.05)
        # Presolve off for the restricted model: on live re-plans with on-hand stock, HiGHS's presolve
        # of it overran its time limit 6-fold (27 s of a 2.4 s budget) and left an 89 % gap; without
        # it the same model solved to optimality in 3 s. The model is small after the restriction.
        st_r, has_r, cols_r, obj_r, _b, secs_r = _run_highs(data_r, time_limit_s=min(remaining, max(1.0, remaining / 3)),
                                                            gap=gap, threads=threads,
                                                            options={"presolve": "off", **(options or {})})
        notes["restricted_seconds"] = round(secs_r, 3)
        P["b_open"].value = np.ones(ix.nd * ix.T)
        data, comp2 = self.stage1.compile()
        comp += comp2
        if has_r and obj_r is not None:
            inc_gap = 0.0 if obj_r <= 1e-9 else (obj_r - lp_obj) / max(abs(obj_r), 1e-9)
            if inc_gap <= gap:
                notes["proven_by"] = "restricted incumbent within gap of the LP bound"
                return "kOptimal", True, cols_r, lp_obj, comp, notes
        remaining = deadline - time.perf_counter()
        if remaining <= 0.05:
            if has_r:
                return "kTimeLimit", True, cols_r, lp_obj, comp, notes
            return "kTimeLimit", False, None, lp_obj, comp, notes
        st, has, cols, obj, bound, secs = _run_highs(data, time_limit_s=remaining, gap=gap,
                                                     start=cols_r if has_r else None, threads=threads, options=options)
        notes["full_milp_seconds"] = round(secs, 3)
        if not has and has_r:
            return "kTimeLimit", True, cols_r, max(lp_obj, bound or lp_obj), comp, notes
        best = lp_obj if bound is None else max(lp_obj, bound)
        return st, has, cols, best, comp, notes

    def _arc_stage(self, n: Numbers, vals1: dict[int, np.ndarray], primary: float, limit: float,
                   threads: int | None):
        """Fewest used arcs keeping the primary objective at most its stage-one value (plus a tolerance
        far below one unit of shortage), warm-started from the stage-one plan."""
        ix = self.index
        xv, yv = np.rint(vals1[self.x.id]), np.rint(vals1[self.y.id])
        self.params["delivered_target"].value = ix.delivered @ yv
        data, comp = self.stage2.compile()
        pp = self.stage2.param_prog()
        start_vals = dict(vals1)
        start_vals[self.x.id], start_vals[self.y.id] = xv, yv
        start_vals[self.a.id] = (ix.arc_x @ xv > 0.5).astype(float)
        start_vals[self.b2.id] = (ix.arc_y @ yv > 0.5).astype(float)
        start_vals[self.one.id] = np.ones(1)
        start_vals[self.inv.id] = self._inventory(n, xv, yv)
        status, has, cols, obj, bound, secs = _run_highs(data, time_limit_s=limit, gap=1e-4,
                                                          start=_columns(pp, start_vals), threads=threads)
        info = {"arc_stage_status": status, "arc_stage_seconds": round(secs, 3)}
        if not has:
            return None, None, info, secs, comp
        v = _split(pp, cols)
        return np.rint(v[self.x.id]), np.rint(v[self.y.id]), info, secs, comp

    # --- reading a plan ------------------------------------------------------------------------------

    def _primary(self, n: Numbers, yv: np.ndarray) -> float:
        ix = self.index
        short = np.maximum(ix.demand_vec(n) - ix.delivered @ yv, 0.0)
        return float(np.repeat(np.tile(n.theta, ix.K), ix.T) @ short)

    def _inventory(self, n: Numbers, xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
        ix = self.index
        net = (ix.receipts @ xv - ix.issues @ yv).reshape(ix.J, ix.M, ix.T)
        return (n.initial[:, :, None] + np.cumsum(net, axis=2)).reshape(-1)

    def _arcs_used(self, xv: np.ndarray, yv: np.ndarray) -> int:
        ix = self.index
        return int((ix.arc_x @ xv > 0.5).sum() + (ix.arc_y @ yv > 0.5).sum())

    def _values_from_result(self, res: PlanResult) -> dict[int, np.ndarray]:
        """Column values for a warm start from an earlier plan of the same structure."""
        ix, st = self.index, self.structure
        mpos = {m: i for i, m in enumerate(st.materials)}
        sarc = {a: i for i, a in enumerate(st.supply_arcs)}
        darc = {a: i for i, a in enumerate(st.delivery_arcs)}
        xv, yv = np.zeros(ix.n_x), np.zeros(ix.n_y)
        for f in res.shipments_in:
            xv[(sarc[(f.origin, f.destination)] * ix.M + mpos[f.material]) * ix.T + f.period - 1] = f.qty
        for f in res.deliveries:
            yv[(darc[(f.origin, f.destination)] * ix.M + mpos[f.material]) * ix.T + f.period - 1] = f.qty
        out = {self.x.id: xv, self.y.id: yv, self.one.id: np.ones(1)}
        n = numbers_of_values(self)
        out[self.inv.id] = self._inventory(n, xv, yv)
        if self.b is not None:
            out[self.b.id] = (ix.arc_y @ yv > 0.5).astype(float)
        return out

    def _demand_summary(self, sc: Scenario, n: Numbers) -> dict[str, Any]:
        from optimizer.summary import summarise
        return summarise(sc, n, None)

    def _result(self, sc, n, urg, status, primary, bound, gap, solve_s, build_s, compile_s, xv, yv, extra,
                message) -> PlanResult:
        from optimizer.summary import summarise
        ix, st = self.index, self.structure
        T = ix.T
        nz = np.flatnonzero(xv > 0.5)
        ship = tuple(Flow(st.supply_sites[ix.x_w[i]], st.distribution_centres[ix.x_j[i]], st.materials[ix.x_m[i]],
                          int(ix.x_t[i]) + 1, float(xv[i])) for i in nz)
        nz = np.flatnonzero(yv > 0.5)
        dels = tuple(Flow(st.distribution_centres[ix.y_j[i]], st.rescue_centres[ix.y_k[i]], st.materials[ix.y_m[i]],
                          int(ix.y_t[i]) + 1, float(yv[i])) for i in nz)
        short = np.maximum(ix.demand_vec(n) - ix.delivered @ yv, 0.0)
        nz = np.flatnonzero(short > 1e-9)
        K_of, rem = np.divmod(nz, ix.M * T)
        m_of, t_of = np.divmod(rem, T)
        shortages = tuple(Shortage(st.rescue_centres[k], st.materials[m], int(t) + 1, float(q))
                          for k, m, t, q in zip(K_of, m_of, t_of, short[nz]))
        summary = summarise(sc, n, short.reshape(ix.K, ix.M, T), spent=float(ix.price_x(n) @ xv)) | extra
        return PlanResult(status=status, objective=primary, bound=bound, gap=gap, solve_seconds=solve_s,
                          build_seconds=build_s, compile_seconds=compile_s, urgency=urg, shipments_in=ship,
                          deliveries=dels, shortage=shortages, summary=summary, message=message)


def numbers_of_values(planner: Planner) -> Numbers:
    """The numbers currently set in the planner's parameters (initial stock is all a warm start needs)."""
    ix = planner.index
    init = planner.params["initial"].value.reshape(ix.J, ix.M)
    z = np.zeros(1)
    return Numbers(supply=z, on_hand=z, price=z, demand=z, initial=init, safety=z, max_inventory=z, capacity=z,
                   max_deliveries=z, budget=None, min_lot=None, theta=z)


def plan(scenario: "Scenario | str | dict", *, time_limit_s: float = 60.0, gap: float = 1e-3,
         solver: str = "HIGHS", prefer_fewer_arcs: bool = False, arc_time_limit_s: float | None = None,
         threads: int | None = None, method: str = "lp-rens") -> PlanResult:
    """Plan one scenario from scratch (build, compile, solve). For repeated solves use :class:`Planner`."""
    sc = load_scenario(scenario)
    return Planner(sc).solve(sc, time_limit_s=time_limit_s, gap=gap, solver=solver,
                             prefer_fewer_arcs=prefer_fewer_arcs, arc_time_limit_s=arc_time_limit_s,
                             threads=threads, method=method)
