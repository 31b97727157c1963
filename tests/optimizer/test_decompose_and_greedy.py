import numpy as np
import pytest

from optimizer import ScenarioError, SolveStatus, load_scenario, plan
from optimizer.decompose import aggregate_bound, plan_by_material
from optimizer.generate import generate
from optimizer.greedy import greedy_plan


@pytest.mark.parametrize("seed", [1, 2])
def test_aggregate_bound_is_below_the_optimum_and_decomposition_above_it(seed):
    sc = load_scenario(generate("paper", seed))
    best = plan(sc, prefer_fewer_arcs=False)
    assert best.status is SolveStatus.OPTIMAL
    bound = aggregate_bound(sc)
    assert 0 < bound <= best.objective * (1 + 1e-9)
    dec = plan_by_material(sc, time_limit_s=30, gap=0.05)
    assert dec.has_plan and dec.objective >= best.objective * (1 - 1e-3)
    assert dec.bound == pytest.approx(bound) and dec.gap == pytest.approx((dec.objective - bound) / dec.objective)
    # the merged plan respects the budget and every rescue centre's demand
    assert dec.summary["spent"] <= sc.budget + 1e-6
    assert all(s.qty >= 0 for s in dec.shortage)


def test_decomposition_refuses_coupled_delivery_rules():
    with pytest.raises(ScenarioError, match="min_lot"):
        plan_by_material("wuhan")


def test_greedy_is_feasible_and_never_beats_the_optimum():
    for src in ("wuhan", generate("paper", 2)):
        sc = load_scenario(src)
        g = greedy_plan(sc)
        best = plan(sc, prefer_fewer_arcs=False)
        assert g.feasible and g.objective >= best.objective * (1 - 1e-6)
        assert np.all(g.shortage >= 0)
        if sc.budget is not None:
            assert g.spent <= sc.budget + 1e-6
