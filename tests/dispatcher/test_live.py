"""Pure planning logic: crowd split, live scenario, deliver-now post-pass, order lines."""
from __future__ import annotations

from dataclasses import dataclass

from dispatcher.crowd import Remaining
from dispatcher.live import (Pipeline, build_live_scenario, deliver_now, orders_for_period, structure_key,
                             live_supply, supply_arcs)
from dispatcher.snapshot import SupplyAvailability, supply_nodes


def row(site, cell, tier, material, available, contracted=100.0, trust=1.0, lat=30.0, lon=114.0):
    return SupplyAvailability(site_id=site, grid_cell=cell, tier=tier, lat=lat, lon=lon, material_id=material,
                              unit="box", reported=available, committed=available, contracted=contracted,
                              trust=trust, reserved=0.0, available=available)


@dataclass(frozen=True)
class F:
    origin: str
    destination: str
    material: str
    period: int
    qty: float


BASE = {
    "name": "t", "periods": 3, "theta": "exp",
    "materials": [{"id": "medicine", "unit": "box", "price": 2.0, "urgency": 0.9},
                  {"id": "pork", "unit": "kg", "price": 1.0, "urgency": 0.1}],
    "supply_sites": [{"id": "X", "supply": {"medicine": [1, 1, 1], "pork": [1, 1, 1]}}],
    "distribution_centres": [{"id": "DC1", "capacity": 1000.0, "initial": {"medicine": 50.0, "pork": 10.0},
                              "max_inventory": {"medicine": 1000.0, "pork": 1000.0},
                              "safety_stock": {"medicine": 5.0, "pork": 0.0}}],
    "rescue_centres": [{"id": "RC1", "demand": {"medicine": [10, 20, 30], "pork": [5, 5, 5]}},
                       {"id": "RC2", "demand": {"medicine": [40, 20, 30], "pork": [5, 5, 5]}}],
    "budget": 1000.0,
}


def test_crowd_split_prefers_contracted_and_trusted_and_never_exceeds_available():
    rows = [row("a", "c1", "decentralized", "medicine", 10, contracted=50, trust=1.0),
            row("b", "c1", "decentralized", "medicine", 30, contracted=100, trust=0.4),   # score 40
            row("c", "c1", "decentralized", "medicine", 20, contracted=80, trust=1.0)]    # score 80
    rem = Remaining(rows)
    picks, short = rem.split(rows, "medicine", 35)
    assert picks == [("c", 20), ("a", 10), ("b", 5)] and short == 0
    picks, short = rem.split(rows, "medicine", 100)
    assert picks == [("b", 25)] and short == 75          # what is left, never more


def test_live_scenario_zeroes_the_past_adds_backlog_and_pipeline():
    nodes = supply_nodes([row("S1", "c1", "centralized", "medicine", 7),
                          row("h1", "c2", "decentralized", "medicine", 3),
                          row("h2", "c2", "decentralized", "pork", 4)])
    assert [n.node_id for n in nodes] == ["S1", "cell:c2"]
    pipe = Pipeline(into_centre={("DC1", "medicine"): 20.0}, out_of_centre={("DC1", "medicine"): 45.0},
                    to_rescue_centre={("RC1", "medicine"): 5.0, ("RC2", "medicine"): 40.0}, spent=100.0)
    sc = build_live_scenario(BASE, periods=3, period=2, demand_scale=1.0, nodes=nodes, pipeline=pipe, name="p")
    rc1 = sc["rescue_centres"][0]["demand"]["medicine"]
    rc2 = sc["rescue_centres"][1]["demand"]["medicine"]
    assert rc1 == [0.0, 25.0, 30] and rc2 == [0.0, 20.0, 30]     # backlog 10-5 = 5 for RC1, none for RC2
    dc = sc["distribution_centres"][0]
    assert dc["initial"]["medicine"] == 25.0                        # 50 + 20 - 45
    # available stock is on hand, shippable in the remaining periods 2..3 (once, over both)
    assert sc["supply_sites"][0]["supply"]["medicine"] == [0.0, 7.0, 7.0]
    assert sc["supply_sites"][0]["on_hand"]["medicine"] == 7.0
    assert sc["supply_sites"][1]["supply"]["pork"] == [0.0, 4.0, 4.0]
    assert sc["supply_sites"][1]["on_hand"]["pork"] == 4.0
    assert sc["budget"] == 900.0
    assert sc["arcs"]["supply"] == [["S1", "DC1"], ["cell:c2", "DC1"]]
    # numbers change from period to period, the structure does not (the compiled problem is reused)
    sc3 = build_live_scenario(BASE, periods=3, period=3, demand_scale=2.0, nodes=nodes, pipeline=pipe, name="q")
    assert structure_key(sc3) == structure_key(sc)
    # a centre below its safety stock gets it lowered rather than an infeasible plan
    low = Pipeline({}, {("DC1", "medicine"): 48.0}, {}, 0.0)
    sc = build_live_scenario(BASE, periods=3, period=2, demand_scale=1.0, nodes=nodes, pipeline=low, name="p")
    assert sc["distribution_centres"][0]["safety_stock"]["medicine"] == 2.0


def test_live_supply_is_whole_units_on_hand_shippable_in_the_remaining_periods():
    assert live_supply(10, 0, 3) == (10.0, [10.0, 10.0, 10.0])
    assert live_supply(11.9, 2, 4) == (11.0, [0.0, 0.0, 11.0, 11.0])  # whole units only
    assert live_supply(0, 1, 2) == (0.0, [0.0, 0.0])


def test_supply_arcs_all_centres_up_to_three_else_two_nearest():
    nodes = supply_nodes([row("S1", "c1", "centralized", "medicine", 7, lat=30.0, lon=114.0),
                          row("S2", "c2", "centralized", "medicine", 7, lat=31.0, lon=115.0)])
    assert len(supply_arcs(nodes, ["A", "B", "C"])) == 6
    arcs = supply_arcs(nodes, ["A", "B", "C", "D", "E"])
    assert len(arcs) == 4 and len({a for a in arcs if a[0] == "S1"}) == 2


def test_deliver_now_tops_up_this_period_within_stock_and_demand():
    sc = build_live_scenario(BASE, periods=3, period=1, demand_scale=1.0, nodes=[],
                             pipeline=Pipeline({}, {}, {}, 0.0), name="p")
    # the plan kept all medicine for later; 45 above safety can go now: RC2 (short 40) first, RC1 gets 5
    out = deliver_now(sc, 1, [F("DC1", "RC1", "pork", 1, 5.0), F("DC1", "RC1", "medicine", 2, 20.0)])
    got = {(j, k, m): q for j, k, m, q in out}
    assert got[("DC1", "RC2", "medicine")] == 40 and got[("DC1", "RC1", "medicine")] == 5
    assert got[("DC1", "RC1", "pork")] == 5 and got[("DC1", "RC2", "pork")] == 5
    assert sum(q for (j, k, m), q in got.items() if m == "medicine") <= 50 - 5


def test_orders_for_period_splits_crowd_nodes_into_site_picks():
    nodes = supply_nodes([row("S1", "c1", "centralized", "medicine", 7),
                          row("h1", "c2", "decentralized", "medicine", 3, contracted=10),
                          row("h2", "c2", "decentralized", "medicine", 4, contracted=90)])
    lines, warnings = orders_for_period(
        1, [F("S1", "DC1", "medicine", 1, 7.0), F("cell:c2", "DC1", "medicine", 1, 5.0),
            F("S1", "DC1", "medicine", 2, 3.0)],
        [("DC1", "RC1", "medicine", 12)], nodes)
    got = {(ln.leg, ln.origin, ln.destination, ln.material): ln.qty for ln in lines}
    assert got == {("supply", "S1", "DC1", "medicine"): 7, ("supply", "h2", "DC1", "medicine"): 4,
                   ("supply", "h1", "DC1", "medicine"): 1, ("delivery", "DC1", "RC1", "medicine"): 12}
    assert warnings == []


def test_demand_file_figures_are_converted_to_the_registry_units():
    from dispatcher.live import in_registry_units

    base = {**BASE, "materials": [{"id": "medicine", "unit": "boxes", "price": 2.0, "urgency": 0.9},
                                  {"id": "alcohol", "unit": "bottles (500 ml)", "price": 10.0, "urgency": 0.5}],
            "supply_sites": [{"id": "X", "supply": {"medicine": [1, 1, 1], "alcohol": [4, 4, 4]},
                              "price": {"medicine": [2.0, 2.0, 2.0], "alcohol": [10.0, 10.0, 12.0]}}],
            "distribution_centres": [{"id": "DC1", "capacity": 1000.0, "initial": {"medicine": 50.0, "alcohol": 41.0},
                                      "max_inventory": {"medicine": 1000.0, "alcohol": 300.0},
                                      "safety_stock": {"medicine": 5.0, "alcohol": 5.0}}],
            "rescue_centres": [{"id": "RC1", "demand": {"medicine": [10, 20, 30], "alcohol": [8, 11, 12]}}]}
    out, notes = in_registry_units(base, {"medicine": "box", "alcohol": "litre"})
    alcohol = next(m for m in out["materials"] if m["id"] == "alcohol")
    assert alcohol["unit"] == "litre" and alcohol["price"] == 20.0  # 10 per 0.5 l bottle = 20 per litre
    assert out["rescue_centres"][0]["demand"]["alcohol"] == [4.0, 6.0, 6.0]  # 5.5 l needed: 6 whole litres
    assert out["supply_sites"][0]["supply"]["alcohol"] == [2.0, 2.0, 2.0]
    assert out["supply_sites"][0]["price"]["alcohol"] == [20.0, 20.0, 24.0]
    dc = out["distribution_centres"][0]
    assert dc["initial"]["alcohol"] == 20.0 and dc["safety_stock"]["alcohol"] == 3.0  # 20.5 held: 20; 2.5 kept: 3
    assert dc["max_inventory"] == {"medicine": 1000.0, "alcohol": 150.0} and dc["capacity"] == 1000.0
    # boxes -> box changes the label only (no note); the figures stay
    assert out["rescue_centres"][0]["demand"]["medicine"] == [10, 20, 30]
    assert next(m for m in out["materials"] if m["id"] == "medicine")["unit"] == "box"
    assert len(notes) == 1 and "converted (1 bottles (500 ml) = 0.5 litre)" in notes[0]
    assert base["rescue_centres"][0]["demand"]["alcohol"] == [8, 11, 12]  # the input is left alone
    again, notes_again = in_registry_units(out, {"medicine": "box", "alcohol": "litre"})
    assert again == out and notes_again == []  # converting twice changes nothing

    kept, said = in_registry_units(base, {"alcohol": "bottle"})
    assert kept["rescue_centres"][0]["demand"]["alcohol"] == [8, 11, 12]
    assert "no conversion known, taken as the same unit" in said[0]
