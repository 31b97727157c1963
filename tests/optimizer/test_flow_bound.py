"""The network bound (each material's maximum flow) is a proven lower bound and can beat the aggregate one."""
import numpy as np
import pytest

from optimizer import load_scenario, plan
from optimizer.decompose import aggregate_relaxation
from optimizer.flow_bound import material_network_bounds, max_deliverable
from optimizer.generate import generate


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_network_bound_and_its_combination_stay_below_the_optimum(seed):
    sc = load_scenario(generate("paper", seed))
    best = plan(sc, time_limit_s=30, gap=1e-6)
    combined = aggregate_relaxation(sc, deliverable=max_deliverable(sc))[0]
    assert material_network_bounds(sc).sum() <= best.objective * (1 + 1e-9)
    assert aggregate_relaxation(sc)[0] <= combined * (1 + 1e-9) and combined <= best.objective * (1 + 1e-9)
    delivered = {}
    for f in best.deliveries:
        delivered[f.material] = delivered.get(f.material, 0.0) + f.qty
    flows = max_deliverable(sc)
    for i, m in enumerate(sc.material_ids):  # the optimum's deliveries are a flow of the relaxation
        assert delivered.get(m, 0.0) <= flows[i] + 1e-6


def test_a_material_cut_off_from_its_demand_is_short_in_the_network_bound_not_in_the_aggregate():
    """One centre with stock but no delivery arc to the rescue centre: nothing can be delivered, which the
    aggregate bound (network dropped) cannot see."""
    sc = load_scenario({
        "name": "cut-off", "periods": 3,
        "materials": [{"id": "med", "unit": "boxes", "theta": 2.0}],
        "supply_sites": [{"id": "W1", "supply": {"med": [10, 10, 10]}, "price": {"med": [1, 1, 1]}}],
        "distribution_centres": [{"id": "J1", "capacity": 100, "initial": {"med": 20}},
                                 {"id": "J2", "capacity": 100, "initial": {"med": 0}}],
        "rescue_centres": [{"id": "K1", "demand": {"med": [5, 5, 5]}}],
        "arcs": {"supply": [["W1", "J1"]], "delivery": [["J2", "K1"]]},
    })
    assert max_deliverable(sc)[0] == 0
    assert material_network_bounds(sc)[0] == pytest.approx(2.0 * 15, rel=1e-6)
    assert aggregate_relaxation(sc)[0] == pytest.approx(0.0, abs=1e-6)
    assert aggregate_relaxation(sc, deliverable=max_deliverable(sc))[0] == pytest.approx(30.0, rel=1e-6)
    assert plan(sc, time_limit_s=10).objective == pytest.approx(30.0, rel=1e-6)
