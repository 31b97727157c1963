import math

import numpy as np
import pytest

from optimizer import THETA_FUNCTIONS, ScenarioError, urgency
from optimizer.urgency import INDICATORS, entropy_weights


def mat(mid, **ind):
    base = {"consumption_rate": 1, "reproduction_rate": 1, "durability": 0, "danger_to_life": 1, "irreplaceability": 1}
    return {"id": mid, "indicators": dict(base, **ind)}


def test_two_materials_every_varying_indicator_gets_equal_weight():
    # B is more urgent on 4 indicators (reproduction: LOWER is more urgent); irreplaceability is constant.
    a = mat("A")
    b = mat("B", consumption_rate=2, reproduction_rate=0, durability=1, danger_to_life=5)
    u = urgency([a, b])
    assert u.weights["irreplaceability"] == 0.0
    for name in ("consumption_rate", "reproduction_rate", "durability", "danger_to_life"):
        assert u.weights[name] == pytest.approx(0.25)
    assert u.scores == {"A": pytest.approx(0.0), "B": pytest.approx(1.0)}
    assert u.coefficients["A"] == pytest.approx(1.0) and u.coefficients["B"] == pytest.approx(math.e)


def test_three_materials_hand_computed_entropy():
    # consumption 0, 1, 2 -> x' 0, .5, 1 -> p 0, 1/3, 2/3; danger 1, 1, 2 -> x' 0, 0, 1 -> entropy 0.
    ms = [mat("A", consumption_rate=0), mat("B", consumption_rate=1), mat("C", consumption_rate=2, danger_to_life=2)]
    e1 = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / math.log(3)  # 0.5794
    d1, d2 = 1 - e1, 1.0
    w1, w2 = d1 / (d1 + d2), d2 / (d1 + d2)
    u = urgency(ms)
    assert u.weights["consumption_rate"] == pytest.approx(w1) == pytest.approx(0.29608, abs=1e-4)
    assert u.weights["danger_to_life"] == pytest.approx(w2)
    assert sum(u.weights.values()) == pytest.approx(1.0)
    assert u.scores["A"] == pytest.approx(0.0)
    assert u.scores["B"] == pytest.approx(0.5 * w1)
    assert u.scores["C"] == pytest.approx(1.0)


def test_all_indicators_constant_and_single_material_give_zero_weights_and_theta_one():
    u = urgency([mat("A"), mat("B")])
    assert all(w == 0 for w in u.weights.values())
    assert u.scores == {"A": 0.0, "B": 0.0} and u.coefficients == {"A": 1.0, "B": 1.0}
    u1 = urgency([mat("only", consumption_rate=7)])
    assert u1.scores == {"only": 0.0} and u1.coefficients == {"only": 1.0}


def test_missing_and_unknown_indicators_are_clear_errors():
    bad = {"id": "X", "indicators": {"consumption_rate": 1}}
    with pytest.raises(ScenarioError, match="X.*missing"):
        urgency([bad, mat("A")])
    with pytest.raises(ScenarioError, match="unknown indicator"):
        urgency([{"id": "Y", "indicators": dict(mat("A")["indicators"], colour=3)}])
    with pytest.raises(ScenarioError, match="indicators missing"):
        urgency([{"id": "Z"}])


def test_overrides_urgency_or_theta_per_material():
    ms = [mat("A"), dict(mat("B", consumption_rate=3), urgency=0.5), {"id": "C", "theta": 4.0}]
    u = urgency(ms, theta="quadratic")
    assert u.scores["B"] == 0.5 and u.coefficients["B"] == pytest.approx(1 + 0.5 + 0.25)
    assert u.coefficients["C"] == 4.0


@pytest.mark.parametrize("name", sorted(THETA_FUNCTIONS))
def test_theta_functions_start_at_one_increase_and_are_convex(name):
    f = THETA_FUNCTIONS[name]
    xs = np.linspace(0, 1, 51)
    ys = np.array([f(x) for x in xs])
    assert ys[0] == pytest.approx(1.0)
    assert np.all(np.diff(ys) > 0)
    assert np.all(np.diff(ys, 2) >= -1e-12)


def test_entropy_weights_orientation_lower_is_more_urgent():
    # reproduction_rate: the material that reproduces slowest is the most urgent
    u = urgency([mat("slow", reproduction_rate=0.1), mat("fast", reproduction_rate=0.9)])
    assert u.scores["slow"] > u.scores["fast"]
    assert list(INDICATORS) == ["consumption_rate", "reproduction_rate", "durability", "danger_to_life",
                                "irreplaceability"]
    w, xn = entropy_weights(np.array([[1.0, 2.0], [1.0, 4.0]]))
    assert w.tolist() == [0.0, 1.0] and xn[:, 0].tolist() == [0.0, 0.0]


def test_the_model_knows_every_name_the_scenario_contract_allows():
    from optimizer import DEFAULT_THETA, INDICATORS
    from vreserve.scenario_names import INDICATOR_NAMES, THETA_NAMES

    assert tuple(INDICATORS) == INDICATOR_NAMES
    assert set(THETA_FUNCTIONS) == set(THETA_NAMES) and DEFAULT_THETA in THETA_NAMES
