"""The HiGHS adapter: outcomes as a status enum and values only with a primal solution (never zeros)."""
import cvxpy as cp
import numpy as np
import pytest

from optimizer import ScenarioError
from optimizer.solver import HighsSolver, SolverStatus


def _data(constraints_of, integer=False):
    x = cp.Variable(2, integer=integer)
    prob = cp.Problem(cp.Minimize(cp.sum(x)), constraints_of(x))
    data, _, _ = prob.get_problem_data("HIGHS")
    return data


def test_an_lp_solved_gives_values_its_bound_and_on_request_its_basis():
    data = _data(lambda x: [x >= 1.5, x <= 4])
    out = HighsSolver().solve(data, time_limit_s=10, gap=1e-6, relax=True, keep_basis=True)
    assert out.status is SolverStatus.OPTIMAL and out.has_solution
    assert out.objective == pytest.approx(3.0) and out.bound == pytest.approx(3.0)
    assert np.allclose(out.values, [1.5, 1.5]) and out.basis is not None
    assert HighsSolver().solve(data, time_limit_s=10, gap=1e-6, relax=True).basis is None


def test_a_milp_rounds_up_and_col_bounds_restrict_it():
    data = _data(lambda x: [x >= 1.5, x <= 4], integer=True)
    out = HighsSolver().solve(data, time_limit_s=10, gap=1e-6)
    assert out.status is SolverStatus.OPTIMAL and np.allclose(out.values, [2, 2]) and out.bound == pytest.approx(4.0)
    restricted = HighsSolver().solve(data, time_limit_s=10, gap=1e-6, col_bounds=(np.array([3.0, 3.0]), np.full(2, np.inf)))
    assert np.allclose(restricted.values, [3, 3])


def test_infeasible_and_stopped_runs_have_no_values():
    bad = HighsSolver().solve(_data(lambda x: [x >= 2, x <= 1]), time_limit_s=10, gap=1e-6, relax=True)
    assert bad.status is SolverStatus.INFEASIBLE and not bad.has_solution and bad.objective is None
    stopped = HighsSolver().solve(_data(lambda x: [x >= 1.5, x <= 4, x[0] + x[1] >= 3.5]), time_limit_s=10, gap=1e-6,
                                  relax=True, options={"simplex_iteration_limit": 0, "presolve": "off"})
    assert stopped.status is SolverStatus.WORK_LIMIT and stopped.values is None and stopped.detail == "kIterationLimit"


def test_an_option_highs_rejects_is_a_clear_error():
    with pytest.raises(ScenarioError, match="HiGHS rejected option"):
        HighsSolver().solve(_data(lambda x: [x >= 1]), time_limit_s=1, gap=1e-6, options={"no_such_option": 1})
