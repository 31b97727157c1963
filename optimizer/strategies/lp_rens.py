"""LP bound + RENS rounding, then the full MILP warm-started (primary stage without arc binaries).

(1) The LP relaxation with HiGHS's primal simplex gives a proven bound (started from the previous
solve's basis when given: a re-plan or the next material of the decomposition); (2) RENS: the MILP
with every integer bounded to floor/ceil of its LP value (a handful of fractional integers on the
benchmark models) gives a plan quickly; (3) only if that plan is not within ``gap`` of the bound, the
full MILP warm-started from it for the remaining time.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from optimizer.formulation import CompiledProblem
from optimizer.solver import HighsSolver, SolverStatus, integer_columns
from optimizer.strategies import StrategyOutcome, relative_gap


def rens_bounds(data: dict, lp_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column bounds that keep every integer within floor/ceil of its LP value (others free)."""
    integer = np.zeros(len(lp_values), dtype=bool)
    integer[np.array(integer_columns(data), dtype=int)] = True
    lower = np.where(integer, np.floor(lp_values + 1e-6), -np.inf)
    upper = np.where(integer, np.ceil(lp_values - 1e-6), np.inf)
    return lower, upper


def solve_lp_rens(problem: CompiledProblem, solver: HighsSolver, *, time_limit_s: float, gap: float,
                  threads: int | None, options: dict[str, Any] | None, basis: Any = None,
                  cold_lp_options: dict[str, Any] | None = None) -> StrategyOutcome:
    """``cold_lp_options`` apply to the LP relaxation only when it starts without a basis."""
    deadline = time.perf_counter() + time_limit_s
    data = problem.data
    notes: dict[str, Any] = {"method": "LP bound + RENS rounding"}
    lp_options = options if basis is not None or not cold_lp_options else {**(options or {}), **cold_lp_options}
    lp = solver.solve(data, time_limit_s=time_limit_s, gap=gap, threads=threads, options=lp_options, relax=True,
                      basis=basis, keep_basis=True)
    notes["lp_seconds"] = round(lp.seconds, 3)
    notes["lp_warm_basis"] = basis is not None
    if lp.status is not SolverStatus.OPTIMAL:
        return StrategyOutcome(lp.status, None, None, notes, detail=lp.detail)
    lp_obj = lp.objective
    lower, upper = rens_bounds(data, lp.values)
    notes["fractional_integers"] = int((np.isfinite(lower) & (upper > lower)).sum())
    remaining = max(deadline - time.perf_counter(), 0.05)
    rens = solver.solve(data, time_limit_s=remaining, gap=gap, threads=threads, options=options,
                        col_bounds=(lower, upper))
    notes["rens_seconds"] = round(rens.seconds, 3)
    if rens.has_solution and rens.objective is not None and relative_gap(rens.objective, lp_obj) <= gap:
        notes["proven_by"] = "RENS plan within gap of the LP bound"
        return StrategyOutcome(SolverStatus.OPTIMAL, rens.values, lp_obj, notes, basis=lp.basis)
    remaining = deadline - time.perf_counter()
    if remaining <= 0.05:
        return StrategyOutcome(SolverStatus.TIME_LIMIT, rens.values, lp_obj, notes, basis=lp.basis,
                               detail="time limit after RENS")
    full = solver.solve(data, time_limit_s=remaining, gap=gap, start=rens.values, threads=threads, options=options)
    notes["full_milp_seconds"] = round(full.seconds, 3)
    if not full.has_solution and rens.has_solution:  # stopped by the clock or by its work limit: say which
        return StrategyOutcome(full.status, rens.values, lp_obj, notes, basis=lp.basis, detail=full.detail)
    best = lp_obj if full.bound is None else max(lp_obj, full.bound)
    return StrategyOutcome(full.status, full.values, best, notes, basis=lp.basis, detail=full.detail)
