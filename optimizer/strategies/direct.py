"""HiGHS on the primary MILP as it is: ``method="milp"``, a warm start from an earlier plan, or a
fix-and-optimize neighbourhood (only the open delivery arcs may be used)."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.formulation import CompiledProblem
from optimizer.solver import HighsSolver
from optimizer.strategies import StrategyOutcome


def solve_milp(problem: CompiledProblem, solver: HighsSolver, *, time_limit_s: float, gap: float,
               start: np.ndarray | None, threads: int | None, options: dict[str, Any] | None) -> StrategyOutcome:
    run = solver.solve(problem.data, time_limit_s=time_limit_s, gap=gap, start=start, threads=threads, options=options)
    notes = {"method": "MILP" + (" (warm start)" if start is not None else "")}
    return StrategyOutcome(run.status, run.values, run.bound, notes, detail=run.detail)


def solve_neighbourhood(problem: CompiledProblem, solver: HighsSolver, *, time_limit_s: float, gap: float,
                        start: np.ndarray | None, threads: int | None,
                        options: dict[str, Any] | None) -> StrategyOutcome:
    """The MILP restricted to the open arcs (set in the formulation before compiling), presolve off (a
    small model; HiGHS's presolve overran its limit on such restrictions). Its bound is no bound of the
    scenario, so none is returned."""
    run = solver.solve(problem.data, time_limit_s=time_limit_s, gap=gap, start=start, threads=threads,
                       options={"presolve": "off", **(options or {})})
    notes = {"method": "MILP on a neighbourhood of open arcs" + (" (warm start)" if start is not None else "")}
    return StrategyOutcome(run.status, run.values, None, notes, detail=run.detail)
