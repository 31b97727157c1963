"""A scenario with no supply site: the optimizer plans the stock held at the distribution centres."""
from optimizer import load_scenario, plan
from optimizer.anytime import plan_anytime
from optimizer.check import check_plan
from optimizer.decompose import aggregate_bound, plan_by_material
from optimizer.generate import generate
from optimizer.greedy import greedy_plan

import pytest


def _without_supply(base: dict) -> dict:
    sc = dict(base, supply_sites=[])
    sc.pop("arcs", None)  # the generator's arcs name the sites
    return sc


def test_one_centre_delivers_its_stock_and_the_rest_is_short():
    sc = load_scenario({"name": "t", "periods": 2, "materials": [{"id": "med", "urgency": 0.5}], "supply_sites": [],
                        "distribution_centres": [{"id": "J1", "capacity": 100, "initial": {"med": 5}}],
                        "rescue_centres": [{"id": "K1", "demand": {"med": [3, 4]}}, {"id": "K2", "demand": {"med": [1, 0]}}]})
    res = plan(sc, time_limit_s=10)
    assert res.status.value == "optimal" and not res.shipments_in
    assert sum(f.qty for f in res.deliveries) == 5  # every unit held goes out
    assert sum(s.qty for s in res.shortage) == 8 - 5  # and the rest is short, counted
    assert check_plan(sc, res).ok


@pytest.mark.parametrize("base", [generate("paper", 1), generate("paper", 2, max_deliveries=2, min_lot=20)],
                         ids=["no limits", "delivery limits and min lot"])
def test_every_method_plans_from_centre_stock_alone_and_passes_the_check(base):
    sc = load_scenario(_without_supply(base))
    exact = plan(sc, time_limit_s=30, gap=1e-6)
    assert exact.has_plan and not exact.shipments_in and exact.deliveries
    anytime = plan_anytime(sc, budget_s=30, gap=1e-3)
    greedy = greedy_plan(sc)
    for res in (exact, anytime):
        assert check_plan(sc, res).ok
        assert res.bound <= exact.objective + 1e-6 * exact.objective
    assert greedy.feasible and greedy.objective >= exact.objective - 1e-6 * exact.objective
    assert aggregate_bound(sc) <= exact.objective
    if sc.min_lot is None:
        by_material = plan_by_material(sc, time_limit_s=30)
        assert check_plan(sc, by_material).ok and by_material.objective >= exact.objective - 1e-6 * exact.objective
