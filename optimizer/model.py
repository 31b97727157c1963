"""The Planner: one compiled model per scenario STRUCTURE, re-solved with new NUMBERS.

The layout: ``optimizer.formulation`` builds the DPP-parameterised CVXPY problem and
compiles it through CVXPY's public re-solve path (set parameter values, ``get_problem_data`` again);
``optimizer.solver`` is the HiGHS adapter (highspy's own model API on the compiled data, a result
dataclass with a status enum); ``optimizer.strategies`` holds the solve strategies, one module each;
``optimizer.readout`` turns columns into a plan. This module only chooses a strategy and reports.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from optimizer.diagnose import diagnose_infeasibility
from optimizer.formulation import CompiledProblem, Formulation
from optimizer.index import Numbers, check_same_structure, numbers_of, structure_of
from optimizer.readout import Timing, arcs_used, flows_of, inventory, plan_result, primary_objective
from optimizer.result import PlanResult, SolveStatus
from optimizer.scenario import Scenario, ScenarioError, load_scenario
from optimizer.solver import HighsSolver, SolverStatus
from optimizer.strategies import StrategyOutcome
from optimizer.strategies.arc_stage import ARC_STAGE_EFFORT, ARC_STAGE_MIN_S, arc_stage_limit, fewest_arcs
from optimizer.strategies.direct import solve_milp, solve_neighbourhood
from optimizer.strategies.lp_guided import solve_lp_guided
from optimizer.strategies.lp_rens import solve_lp_rens
from optimizer.summary import summarise
from optimizer.urgency import urgency as compute_urgency

__all__ = ["ARC_STAGE_EFFORT", "ARC_STAGE_MIN_S", "Planner", "SUPPORTED_SOLVERS", "arc_stage_limit", "plan"]

SUPPORTED_SOLVERS = ("HIGHS",)
METHODS = ("lp-rens", "milp")


class Planner:
    """A compiled model for one scenario STRUCTURE; ``solve`` takes new numbers without recompiling.

    >>> planner = Planner(scenario)
    >>> result = planner.solve(scenario_with_new_numbers, time_limit_s=10)
    """

    def __init__(self, scenario: "Scenario | str | dict"):
        sc = load_scenario(scenario)
        t0 = time.perf_counter()
        self.structure = structure_of(sc)
        self.formulation = Formulation(self.structure)
        self.index = self.formulation.index
        self.stage1 = self.formulation.stage1
        self.solver = HighsSolver()
        self.build_seconds = time.perf_counter() - t0
        self.last_shape: tuple[int, int] | None = None  # (rows, columns) of the primary model passed to HiGHS
        self._lp_basis = None  # final simplex basis of the last LP relaxation (a warm start for the next)

    @property
    def lp_basis(self) -> Any:
        """The final simplex basis of the last LP relaxation (opaque; None before one), the next LP's start."""
        return self._lp_basis

    def start_lp_from(self, basis: Any) -> None:
        """Start the next LP relaxation from ``basis``: the final basis of another planner compiled for the
        same structure (the decomposition's second lane starts from the first lane's first material)."""
        self._lp_basis = basis

    def solve(self, scenario: "Scenario | str | dict", *, time_limit_s: float = 60.0, gap: float = 1e-3,
              solver: str = "HIGHS", prefer_fewer_arcs: bool = False, arc_time_limit_s: float | None = None,
              warm_start: "PlanResult | None" = None, threads: int | None = None,
              highs_options: dict[str, Any] | None = None, method: str = "lp-rens",
              reuse_basis: bool = True, open_arcs: np.ndarray | None = None,
              cold_lp_options: dict[str, Any] | None = None) -> PlanResult:
        """Solve the compiled model with the numbers of ``scenario`` (same structure, else ScenarioError).

        method: "lp-rens" (default) uses ``strategies.lp_rens`` (models without arc binaries) or
        ``strategies.lp_guided`` (with them); "milp" runs HiGHS on the full MILP directly (measured
        slower: city re-plan 57 s vs 5.6 s, paper 0.2-0.7 s vs 0.03 s). A ``warm_start`` plan also
        goes straight to the full MILP, started from it.

        time_limit_s bounds the primary solve. The fewer-arcs stage runs only with
        ``prefer_fewer_arcs=True``; its limit is ``strategies.arc_stage.arc_stage_limit``.

        reuse_basis=False starts the LP from scratch instead of from the last solve's simplex basis:
        slower, but the plan is then a function of the numbers alone (a degenerate LP has many optimal
        vertices, and which one a warm start lands on depends on history). The dispatcher needs that, so
        that a restarted process re-derives the very orders a clean run would have published.

        open_arcs ([delivery arcs, periods] booleans; models with arc binaries only): a fix-and-optimize
        neighbourhood. Only these delivery arcs may be used (the delivery limits still apply among
        them) and the MILP is solved directly, without the LP relaxation, from ``warm_start`` if given.

        cold_lp_options: HiGHS options for lp-rens's LP relaxation when it has no basis to start from
        (the decomposition by material asks for the interior point method there).
        """
        self._refuse_bad_call(solver, method, open_arcs)
        if not reuse_basis:
            self._lp_basis = None
        sc = load_scenario(scenario)
        check_same_structure(self.structure, sc)
        n = numbers_of(sc)
        build, self.build_seconds = self.build_seconds, 0.0  # reported once, by the first solve
        self.formulation.set_numbers(n)
        if open_arcs is not None:
            self.formulation.open_arcs(open_arcs)
        problem = self.stage1.compile()
        self.last_shape = problem.shape
        t_start = time.perf_counter()
        outcome = self._primary(problem, n, time_limit_s=time_limit_s, gap=gap, warm_start=warm_start,
                                threads=threads, options=highs_options, method=method, open_arcs=open_arcs,
                                cold_lp_options=cold_lp_options)
        timing = Timing(time.perf_counter() - t_start, build, problem.seconds + outcome.compile_seconds)
        extra = {"solver": self.solver.name} | outcome.notes | {"solver_status": outcome.status.value}
        if not outcome.has_solution:
            return self._no_plan(sc, n, outcome, timing, extra)
        return self._plan(sc, n, problem, outcome, timing, extra, proven=outcome.status is SolverStatus.OPTIMAL
                          and open_arcs is None, prefer_fewer_arcs=prefer_fewer_arcs,
                          arc_limit_s=arc_stage_limit(timing.solve, time_limit_s, arc_time_limit_s), threads=threads)

    def _refuse_bad_call(self, solver: str, method: str, open_arcs: np.ndarray | None) -> None:
        if solver.upper() not in SUPPORTED_SOLVERS:
            raise ScenarioError(f"solver {solver!r} not supported here (supported: {', '.join(SUPPORTED_SOLVERS)})")
        if method not in METHODS:
            raise ScenarioError(f"unknown method {method!r} ({', '.join(METHODS)})")
        if open_arcs is not None and self.formulation.b is None:
            raise ScenarioError("open_arcs needs a model with arc binaries (min lot or delivery limits)")

    def _primary(self, problem: CompiledProblem, n: Numbers, *, time_limit_s: float, gap: float,
                 warm_start: PlanResult | None, threads: int | None, options: dict[str, Any] | None, method: str,
                 open_arcs: np.ndarray | None, cold_lp_options: dict[str, Any] | None = None) -> StrategyOutcome:
        """Choose and run the primary-stage strategy (see ``solve``)."""
        start = None
        if warm_start is not None and warm_start.has_plan:
            start = problem.columns(self._start_values(n, warm_start))
        common = {"time_limit_s": time_limit_s, "gap": gap, "threads": threads, "options": options}
        if open_arcs is not None:
            return solve_neighbourhood(problem, self.solver, start=start, **common)
        if start is None and method == "lp-rens" and self.formulation.b is None:
            outcome = solve_lp_rens(problem, self.solver, basis=self._lp_basis, cold_lp_options=cold_lp_options,
                                    **common)
            self._lp_basis = outcome.basis  # the next solve of this structure starts from it
            return outcome
        if start is None and method == "lp-rens":
            return solve_lp_guided(self.formulation, problem, self.solver, **common)
        return solve_milp(problem, self.solver, start=start, **common)

    def _start_values(self, n: Numbers, res: PlanResult) -> dict[int, np.ndarray]:
        """Values per variable of an earlier plan of this structure (a MIP start)."""
        form, ix = self.formulation, self.index
        xv, yv = flows_of(ix, res)
        out = {form.x.id: xv, form.y.id: yv, form.one.id: np.ones(1), form.inv.id: inventory(ix, n, xv, yv)}
        if form.b is not None:
            out[form.b.id] = (ix.arc_y @ yv > 0.5).astype(float)
        return out

    def _no_plan(self, sc: Scenario, n: Numbers, outcome: StrategyOutcome, timing: Timing,
                 extra: dict[str, Any]) -> PlanResult:
        """INFEASIBLE (with the elastic LP's diagnosis) or NO_SOLUTION: never a plan of zeros."""
        urg = compute_urgency(sc.materials, sc.theta)
        common = {"solve_seconds": timing.solve, "build_seconds": timing.build, "compile_seconds": timing.compile,
                  "urgency": urg, "summary": summarise(sc, n, None) | extra, "objective": None, "gap": None}
        if outcome.status is SolverStatus.INFEASIBLE:
            return PlanResult(status=SolveStatus.INFEASIBLE, bound=None, **common,
                              infeasibility=tuple(diagnose_infeasibility(sc, n, self.index)),
                              message="the constraints admit no plan")
        why = ("time limit reached without a plan" if outcome.status is SolverStatus.TIME_LIMIT
               else f"solver stopped: {outcome.detail or outcome.status.value}")
        bound = None if outcome.bound is None else max(outcome.bound, 0.0)
        return PlanResult(status=SolveStatus.NO_SOLUTION, bound=bound, message=why, **common)

    def _plan(self, sc: Scenario, n: Numbers, problem: CompiledProblem, outcome: StrategyOutcome, timing: Timing,
              extra: dict[str, Any], *, proven: bool, prefer_fewer_arcs: bool, arc_limit_s: float,
              threads: int | None) -> PlanResult:
        """The plan in whole units, its objective recomputed, the optional fewer-arcs stage, the result."""
        ix, form = self.index, self.formulation
        values = problem.split(outcome.values)
        xv, yv = np.rint(values[form.x.id]), np.rint(values[form.y.id])
        primary = primary_objective(ix, n, yv)
        bound = min(0.0 if outcome.bound is None else max(float(outcome.bound), 0.0), primary)
        extra = extra | {"arcs_used_stage1": arcs_used(ix, xv, yv)}
        if prefer_fewer_arcs:
            x2, y2, notes, secs, comp = fewest_arcs(form, self.solver, n, values, arc_limit_s, threads)
            timing = Timing(timing.solve + secs, timing.build, timing.compile + comp)
            extra |= notes
            if x2 is not None and primary_objective(ix, n, y2) <= primary + 1e-9 * max(1.0, primary):
                xv, yv = x2, y2
                primary = min(primary, primary_objective(ix, n, yv))
        extra["arcs_used"] = arcs_used(ix, xv, yv)
        gap = 0.0 if primary <= 1e-9 else max(0.0, (primary - bound) / primary)
        status = SolveStatus.OPTIMAL if proven else SolveStatus.FEASIBLE
        message = "proven within the gap" if proven else f"stopped ({outcome.status.value}) with a plan"
        return plan_result(sc, n, ix, compute_urgency(sc.materials, sc.theta), status=status, objective=primary,
                           bound=bound, gap=gap, timing=timing, xv=xv, yv=yv, extra=extra, message=message)


def plan(scenario: "Scenario | str | dict", *, time_limit_s: float = 60.0, gap: float = 1e-3,
         solver: str = "HIGHS", prefer_fewer_arcs: bool = False, arc_time_limit_s: float | None = None,
         threads: int | None = None, method: str = "lp-rens") -> PlanResult:
    """Plan one scenario from scratch (build, compile, solve). For repeated solves use :class:`Planner`."""
    sc = load_scenario(scenario)
    return Planner(sc).solve(sc, time_limit_s=time_limit_s, gap=gap, solver=solver,
                             prefer_fewer_arcs=prefer_fewer_arcs, arc_time_limit_s=arc_time_limit_s,
                             threads=threads, method=method)
