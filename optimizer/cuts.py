"""Valid inequalities added to the compiled MILP at the solver (no CVXPY recompile).

The model links each delivery arc's binary b[d, t] to its deliveries by ONE aggregated row,
sum_m y[d, m, t] <= U[d, t] b[d, t] (U: the rescue centre's total demand, what the centre can hold).
In the LP relaxation a fraction of b then opens a fraction of the whole arc for every material, so the
relaxation can pour the full U into whichever material it likes: with delivery limits the full model's
LP bound (city seed 1, F = 2: 10,108,982) was weaker than the fleet bound (10,282,053), which drops the
stock flow altogether.

The per-material big-M rows y[d, m, t] <= u[d, m, t] b[d, t], with u the tightest simple bound of that
one flow (``Index.material_delivery_bound``: the rescue centre's demand of m in t, U[d, t], and what the
centre can hold of m), are valid for every integer plan (b = 0 closes the arc; b = 1 leaves a bound
every plan respects anyway) and cut off those fractional points. With them the LP relaxation keeps
both the fleet limits (as tightly as the fleet bound) and the stock flow: 10,547,326 on the same
instance. Adding them through CVXPY (``cp.multiply`` of a 30,000-entry parameter) made the compile
take 22.6 s instead of about 1 s, so they are built here over the compiled columns instead.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optimizer.formulation import CompiledProblem, Formulation
from optimizer.index import Numbers, numbers_of
from optimizer.solver import SolverStatus


def material_linking_rows(form: Formulation, problem: CompiledProblem, n: Numbers) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows ``y[d, m, t] - u[d, m, t] b[d, t] <= 0`` over the solver's columns, only where u is below the
    arc's aggregated bound U[d, t] (elsewhere the aggregated row already implies it)."""
    ix = form.index
    if form.b is None:
        return sp.csr_matrix((0, problem.param_prog.x.size)), np.zeros(0)
    u = ix.material_delivery_bound(n)
    arc = ix.y_arc * ix.T + ix.y_t
    keep = np.flatnonzero(u < ix.delivery_bound(n)[arc] - 1e-9)
    cols = problem.param_prog.var_id_to_col
    y0, b0 = cols[form.y.id], cols[form.b.id]
    rows = np.arange(keep.size)
    a = sp.csr_matrix((np.concatenate([np.ones(keep.size), -u[keep]]),
                       (np.concatenate([rows, rows]), np.concatenate([y0 + keep, b0 + arc[keep]]))),
                      shape=(keep.size, problem.param_prog.x.size))
    return a, np.zeros(keep.size)


def strengthened_lp_bound(planner, sc, time_limit_s: float) -> float | None:
    """The full model's LP relaxation with the per-material linking rows: a proven lower bound that keeps
    the delivery limits AND which material each rescue centre gets (city seed 1, F = 2: 10,547,326
    against 10,499,972 for the stock-fleet bound and 10,282,053 for the fleet bound), or None if the LP
    did not finish. HiGHS's interior point method without crossover (12-15 s at city size at load average
    1-5; primal simplex 29 s, dual simplex > 120 s); its objective is taken less a 1e-6 relative margin
    for the solver's optimality tolerance (1e-8)."""

    n = numbers_of(sc)
    form = planner.formulation
    form.set_numbers(n)  # every arc open
    problem = planner.stage1.compile()
    rows = material_linking_rows(form, problem, n)
    lp = planner.solver.solve(problem.data, time_limit_s=time_limit_s, gap=1e-6, relax=True, extra_rows=rows,
                              options={"solver": "ipm", "run_crossover": "off"})
    if lp.status is not SolverStatus.OPTIMAL or lp.objective is None:
        return None
    return max(lp.objective - 1e-6 * max(1.0, abs(lp.objective)), 0.0)
