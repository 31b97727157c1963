import json

import pytest

from optimizer import ScenarioError, known_packs, load_scenario

from opt_builders import one_chain


def test_scalars_expand_per_period_and_defaults_fill_every_material():
    sc = load_scenario(one_chain(3, supply_sites=[{"id": "W1", "supply": {"med": 4}, "price": {"med": [1, 2, 3]}}]))
    assert sc.supply_sites[0].supply["med"] == (4.0, 4.0, 4.0)
    assert sc.supply_sites[0].price["med"] == (1.0, 2.0, 3.0)
    j = sc.distribution_centres[0]
    assert j.max_inventory["med"] == 1000 and j.safety_stock["med"] == 0
    assert sc.supply_arcs() == [("W1", "J1")] and sc.delivery_arcs() == [("J1", "K1")]


def test_on_hand_alone_is_shippable_in_any_period_and_round_trips():
    sc = load_scenario(one_chain(3, supply_sites=[{"id": "W1", "on_hand": {"med": 7}}]))
    w = sc.supply_sites[0]
    assert w.on_hand == {"med": 7.0} and w.supply["med"] == (7.0, 7.0, 7.0)
    assert load_scenario(sc.to_dict()) == sc
    # a series given next to on_hand is kept as it is
    sc = load_scenario(one_chain(3, supply_sites=[{"id": "W1", "supply": {"med": [0, 5, 5]}, "on_hand": {"med": 7}}]))
    assert sc.supply_sites[0].supply["med"] == (0.0, 5.0, 5.0)
    assert load_scenario(one_chain(3)).supply_sites[0].on_hand is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(colour="red"), r"unknown key.*colour"),
    (lambda d: d["supply_sites"][0].update(supply={"gold": 1}), r"supply_sites\[0\] \(W1\)\.supply: unknown material 'gold'"),
    (lambda d: d["distribution_centres"][0].update(initial={"med": -5}), r"initial\.med: negative number -5"),
    (lambda d: d["rescue_centres"][0].update(demand={"med": [1, 2, 3]}), r"demand\.med: list of 3 values, need one per period \(2\)"),
    (lambda d: d.update(arcs={"delivery": [["J1", "K9"]]}), r"arcs\.delivery\[0\]: unknown rescue centre 'K9'"),
    (lambda d: d["materials"].append(dict(d["materials"][0])), r"duplicate id"),
    (lambda d: d["materials"][0].pop("indicators"), r"indicator\(s\) missing"),
    (lambda d: d.update(periods=0), r"periods: need a positive integer"),
    (lambda d: d.update(theta="cosine"), r"unknown function 'cosine'"),
    (lambda d: d["distribution_centres"][0].update(capacity="lots"), r"capacity: not a number"),
    (lambda d: d.pop("rescue_centres"), r"missing key"),
    (lambda d: d["supply_sites"][0].update(on_hand={"med": -1}), r"on_hand\.med: negative number -1"),
    (lambda d: d["supply_sites"][0].update(on_hand={"gold": 1}), r"on_hand: unknown material 'gold'"),
])
def test_validation_errors_say_where_and_why(mutate, message):
    d = one_chain()
    mutate(d)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(d)


def test_pack_names_files_and_round_trip(tmp_path):
    assert {"wuhan", "shanghai"} <= set(known_packs())
    wuhan = load_scenario("wuhan")
    assert len(wuhan.rescue_centres) == 5 and len(wuhan.distribution_centres) == 3
    assert len(wuhan.supply_sites) == 2 and len(wuhan.materials) == 4 and wuhan.periods == 10
    total = sum(sum(v) for k in wuhan.rescue_centres for v in k.demand.values())
    assert 70_000 <= total <= 74_000
    sh = load_scenario("shanghai")
    assert 850_000 <= sum(sum(v) for k in sh.rescue_centres for v in k.demand.values()) <= 890_000
    path = tmp_path / "w.json"
    path.write_text(json.dumps(wuhan.to_dict()))
    assert load_scenario(path) == wuhan
    assert load_scenario(str(path)) == wuhan
    with pytest.raises(ScenarioError, match="no scenario file 'atlantis' and no pack"):
        load_scenario("atlantis")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="cannot parse"):
        load_scenario(bad)
