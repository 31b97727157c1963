"""LP bound, the MILP on the arcs the LP uses most, then the full MILP (primary stage with arc binaries).

The LP relaxation is usually tight here, but HiGHS struggles to find an integer plan that respects the
per-centre delivery limits. So: (1) solve the LP relaxation (a proven bound); (2) keep, per centre and
period, only the arcs the LP uses most (at most the limit) and solve that restricted MILP briefly (an
incumbent); (3) if the incumbent is within ``gap`` of the LP bound, it is proven; else run the full MILP
warm-started from it for the remaining time.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from optimizer.formulation import CompiledProblem, Formulation
from optimizer.solver import HighsSolver, SolverStatus
from optimizer.strategies import StrategyOutcome, relative_gap


def lp_arcs(form: Formulation, problem: CompiledProblem, lp_values: np.ndarray) -> np.ndarray:
    """[arcs, periods]: the delivery arcs the LP uses, at most each centre's limit (largest flow first)."""
    ix = form.index
    y = problem.split(lp_values)[form.y.id]
    flow = (ix.arc_y @ np.maximum(y, 0.0)).reshape(ix.nd, ix.T)
    open_ = flow > 1e-6
    P = form.params
    limits = ix.index_limits(P["max_deliveries"].value.reshape(-1, ix.T)) if "max_deliveries" in P else {}
    for j, cap in limits.items():
        arcs = np.flatnonzero(ix.d_j == j)
        for t in range(ix.T):
            used = arcs[open_[arcs, t]]
            if len(used) > cap[t]:
                keep = used[np.argsort(-flow[used, t])[:int(cap[t])]]
                open_[used, t] = False
                open_[keep, t] = True
    return open_


def solve_lp_guided(form: Formulation, problem: CompiledProblem, solver: HighsSolver, *, time_limit_s: float,
                    gap: float, threads: int | None, options: dict[str, Any] | None) -> StrategyOutcome:
    deadline = time.perf_counter() + time_limit_s
    notes: dict[str, Any] = {"method": "LP bound + LP-guided arc restriction"}
    lp = solver.solve(problem.data, time_limit_s=time_limit_s, gap=gap, threads=threads, options=options, relax=True)
    notes["lp_seconds"] = round(lp.seconds, 3)
    if lp.status is not SolverStatus.OPTIMAL:
        return StrategyOutcome(lp.status, None, None, notes, detail=lp.detail)
    lp_obj = lp.objective
    form.open_arcs(lp_arcs(form, problem, lp.values))
    restricted_problem = form.stage1.compile()
    remaining = max(deadline - time.perf_counter(), 0.05)
    # Presolve off for the restricted model: on live re-plans with on-hand stock, HiGHS's presolve
    # of it overran its time limit 6-fold (27 s of a 2.4 s budget) and left an 89 % gap; without
    # it the same model solved to optimality in 3 s. The model is small after the restriction.
    restricted = solver.solve(restricted_problem.data, time_limit_s=min(remaining, max(1.0, remaining / 3)), gap=gap,
                              threads=threads, options={"presolve": "off", **(options or {})})
    notes["restricted_seconds"] = round(restricted.seconds, 3)
    form.open_arcs(np.ones(form.index.nd * form.index.T))
    full_problem = form.stage1.compile()
    compile_s = restricted_problem.seconds + full_problem.seconds
    if restricted.has_solution and relative_gap(restricted.objective, lp_obj) <= gap:
        notes["proven_by"] = "restricted incumbent within gap of the LP bound"
        return StrategyOutcome(SolverStatus.OPTIMAL, restricted.values, lp_obj, notes, compile_s)
    if deadline - time.perf_counter() <= 0.05:
        return StrategyOutcome(SolverStatus.TIME_LIMIT, restricted.values, lp_obj, notes, compile_s,
                               detail="time limit after the restricted MILP")
    full = solver.solve(full_problem.data, time_limit_s=deadline - time.perf_counter(), gap=gap,
                        start=restricted.values, threads=threads, options=options)
    notes["full_milp_seconds"] = round(full.seconds, 3)
    best = lp_obj if full.bound is None else max(lp_obj, full.bound)
    if not full.has_solution and restricted.has_solution:
        return StrategyOutcome(full.status, restricted.values, best, notes, compile_s, detail=full.detail)
    return StrategyOutcome(full.status, full.values, best, notes, compile_s, detail=full.detail)
