"""The solver adapter: HiGHS on a compiled model, its outcome as a small frozen dataclass with a status enum.

Nothing above this module sees a HiGHS status string or a highspy object other than an opaque simplex
basis: strategies branch on :class:`SolverStatus`, and a time limit without an incumbent is
``TIME_LIMIT`` with ``values is None`` (CVXPY's own HiGHS interface would hand back zeros there).

The model is CVXPY's compiled data (``Problem.get_problem_data``: min c x s.t. A_eq x = b_eq,
A_ineq x <= b_ineq, column bounds, integer and boolean column indices) passed to HiGHS through
highspy's own model API, so that we set the time limit, the warm start and the starting basis and read
the dual bound and the primal solution status ourselves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

import cvxpy.settings as cps
import highspy as hp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.solvers.conic_solvers.conic_solver import dims_to_solver_dict

from optimizer.errors import ScenarioError


class SolverStatus(str, Enum):
    OPTIMAL = "optimal"  # an LP solved, or a MILP proven within the requested relative gap
    TIME_LIMIT = "time_limit"  # stopped by the time limit (with or without an incumbent): the clock decided
    WORK_LIMIT = "work_limit"  # stopped by a deterministic work limit (nodes, iterations): the input decided
    INFEASIBLE = "infeasible"  # no point satisfies the constraints (HiGHS: infeasible, or unbounded-or-infeasible)
    TARGET = "target"  # a MILP stopped at a plan as good as its objective target (the input decided)
    STOPPED = "stopped"  # any other stop (interrupt, solver error)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SolverOutcome:
    """One solver run: its status, the column values if it has a primal solution, objective, dual bound."""

    status: SolverStatus
    values: np.ndarray | None  # column values, None without a primal solution
    objective: float | None
    bound: float | None  # dual bound (a MILP's best bound, an optimal LP's objective); None if unknown
    seconds: float  # wall time in the solver, s
    basis: Any = None  # final simplex basis of an optimal LP (opaque; a warm start for the same shape)
    detail: str = ""  # the solver's own status name, for people only (messages), never branched on

    @property
    def has_solution(self) -> bool:
        return self.values is not None


_STATUS = {"kOptimal": SolverStatus.OPTIMAL, "kTimeLimit": SolverStatus.TIME_LIMIT,
           # HiGHS reports mip_max_nodes / mip_max_leaves as a solution limit
           "kIterationLimit": SolverStatus.WORK_LIMIT, "kSolutionLimit": SolverStatus.WORK_LIMIT,
           "kObjectiveTarget": SolverStatus.TARGET,
           "kInfeasible": SolverStatus.INFEASIBLE, "kUnboundedOrInfeasible": SolverStatus.INFEASIBLE}
_FEASIBLE_PRIMAL = 2  # HiGHS's primal_solution_status for a feasible point


def integer_columns(data: dict) -> list[int]:
    """Indices of the integer and boolean columns of compiled CVXPY data."""
    return list(data[cps.BOOL_IDX]) + list(data[cps.INT_IDX])


class HighsSolver:
    """HiGHS through highspy. ``on_event(kind, objective, dual bound)`` (if given to ``solve``) is called
    on every improving MIP solution ("improving") and MIP log line ("progress")."""

    name = "HiGHS"

    def solve(self, data: dict, *, time_limit_s: float, gap: float, start: np.ndarray | None = None,
              threads: int | None = None, options: dict[str, Any] | None = None, relax: bool = False,
              col_bounds: tuple[np.ndarray, np.ndarray] | None = None, basis: Any = None,
              keep_basis: bool = False, extra_rows: tuple[Any, np.ndarray] | None = None,
              on_event: Callable[[str, float, float], None] | None = None) -> SolverOutcome:
        """Solve compiled data. ``relax`` drops integrality (the LP relaxation, whose optimum is a valid
        bound); ``col_bounds`` (lower, upper) tighten column bounds (a restricted problem, e.g. RENS);
        ``basis`` starts the simplex from a basis of a model with the same shape (``keep_basis``
        returns the final one of an optimal solve); ``start`` is a MIP starting solution; ``extra_rows``
        (a sparse matrix over the solver's columns, upper bounds) are added as ``rows @ x <= upper`` (valid
        inequalities that tighten the model without recompiling it)."""
        h = hp.Highs()
        model, integer = self._model(h, data, relax, col_bounds, extra_rows)
        self._set_options(h, time_limit_s, gap, relax, threads, options)
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
        return self._outcome(h, integer, time.perf_counter() - t0, keep_basis)

    @staticmethod
    def _model(h: hp.Highs, data: dict, relax: bool, col_bounds, extra_rows=None) -> tuple[hp.HighsModel, bool]:
        inf = h.inf
        dims = dims_to_solver_dict(data[cps.DIMS])
        A = data[cps.A]
        n_eq, n_leq = dims[cps.EQ_DIM], dims[cps.LEQ_DIM]
        ub = data[cps.B]
        if extra_rows is not None:
            A = sp.vstack([A, extra_rows[0]])
            ub = np.concatenate([ub, extra_rows[1]])
            n_leq += extra_rows[0].shape[0]
        A = A.tocsc()
        model = hp.HighsModel()
        lp = model.lp_
        lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
        lp.offset_ = 0.0
        lp.col_cost_ = data[cps.C]
        lp.row_lower_, lp.row_upper_ = np.concatenate([ub[:n_eq], np.full(n_leq, -inf)]), ub
        lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
        lower = data[cps.LOWER_BOUNDS]
        upper = data[cps.UPPER_BOUNDS]
        col_lower = np.full(lp.num_col_, -inf) if lower is None else lower.copy()
        col_upper = np.full(lp.num_col_, inf) if upper is None else upper.copy()
        integer = [] if relax else integer_columns(data)
        if data[cps.BOOL_IDX]:  # binaries keep their [0, 1] bounds in the relaxation too
            bi = np.array(data[cps.BOOL_IDX], dtype=int)
            col_lower[bi] = np.maximum(col_lower[bi], 0)
            col_upper[bi] = np.minimum(col_upper[bi], 1)
        if integer:
            kinds = np.zeros(lp.num_col_, dtype=bool)
            kinds[np.array(integer, dtype=int)] = True
            lp.integrality_ = [hp.HighsVarType.kInteger if k else hp.HighsVarType.kContinuous for k in kinds]
        if col_bounds is not None:
            col_lower = np.maximum(col_lower, col_bounds[0])
            col_upper = np.minimum(col_upper, col_bounds[1])
        lp.col_lower_, lp.col_upper_ = col_lower, col_upper
        return model, bool(integer)

    @staticmethod
    def _set_options(h: hp.Highs, time_limit_s: float, gap: float, relax: bool, threads: int | None,
                     options: dict[str, Any] | None) -> None:
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

    @staticmethod
    def _outcome(h: hp.Highs, integer: bool, seconds: float, keep_basis: bool) -> SolverOutcome:
        detail = h.getModelStatus().name
        status = _STATUS.get(detail, SolverStatus.STOPPED)
        info = h.getInfo()
        has = status is SolverStatus.OPTIMAL or int(info.primal_solution_status) == _FEASIBLE_PRIMAL
        objective = float(info.objective_function_value) if has else None
        bound = None
        if integer:
            db = float(info.mip_dual_bound)
            bound = db if np.isfinite(db) else None
        elif status is SolverStatus.OPTIMAL:
            bound = objective
        return SolverOutcome(status=status, values=np.array(h.getSolution().col_value) if has else None,
                             objective=objective, bound=bound, seconds=seconds,
                             basis=h.getBasis() if keep_basis and status is SolverStatus.OPTIMAL else None, detail=detail)
