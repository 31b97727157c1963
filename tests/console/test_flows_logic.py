"""The flows the map draws (console/flows.py): arcs summed per material, cancelled orders left out,
positions only from the registry and the orders' carrier details, never invented."""
from __future__ import annotations

from console.flows import OrderLeg, Place, aggregate_flows, places_from_details

SITE = Place("S-1", "site", "Depot 1", 30.6, 114.2)
DC = Place("DC1", "distribution_centre", "Centre 1", 30.62, 114.14)
RC = Place("RC-a", "rescue_centre", "District A", 30.6, 114.31)


def test_arcs_sum_their_orders_per_material_and_skip_cancelled_ones():
    orders = [OrderLeg("supply", "S-1", "DC1", "mask", 1200.0, "piece", "open"),
              OrderLeg("supply", "S-1", "DC1", "mask", 300.0, "piece", "in_transit"),
              OrderLeg("supply", "S-1", "DC1", "pork", 40.0, "kg", "accepted"),
              OrderLeg("supply", "S-1", "DC1", "mask", 999.0, "piece", "cancelled"),
              OrderLeg("delivery", "DC1", "RC-a", "mask", 800.0, "piece", "delivered")]
    out = aggregate_flows(orders, {p.place_id: p for p in (SITE, DC, RC)})
    arcs = {(f["leg"], f["material_id"]): (f["qty"], f["unit"], f["orders"]) for f in out["flows"]}
    assert arcs == {("supply", "mask"): (1500.0, "piece", 2), ("supply", "pork"): (40.0, "kg", 1),
                    ("delivery", "mask"): (800.0, "piece", 1)}
    assert set(out["places"]) == {"S-1", "DC1", "RC-a"}
    assert out["places"]["DC1"] == {"place_id": "DC1", "kind": "distribution_centre", "name": "Centre 1",
                                    "lat": 30.62, "lon": 114.14}
    assert out["unplaced"]["flows"] == 0


def test_an_arc_with_an_end_without_position_is_counted_not_drawn():
    orders = [OrderLeg("supply", "S-1", "DC1", "mask", 10.0, "piece", "open"),
              OrderLeg("delivery", "DC1", "RC-x", "mask", 7.0, "piece", "open"),
              OrderLeg("delivery", "DC1", "RC-x", "mask", 3.0, "piece", "open")]
    out = aggregate_flows(orders, {p.place_id: p for p in (SITE, DC)})
    assert [f["destination"] for f in out["flows"]] == ["DC1"]
    assert out["unplaced"] == {"flows": 1, "qty_by_material": {"mask": {"qty": 10.0, "unit": "piece"}},
                               "ends_without_position": ["RC-x"]}
    assert "RC-x" not in out["places"]


def test_centre_positions_come_from_the_orders_carrier_details_only_when_stated():
    details = {"origin_place": {"id": "DC1", "kind": "distribution_centre", "name": "Centre 1", "lat": 30.62, "lon": 114.14},
               "destination_place": {"id": "RC-a", "kind": "rescue_centre", "name": "District A", "lat": None, "lon": None}}
    supply = {"origin_place": {"id": "S-1", "kind": "site", "name": "Depot 1", "lat": 1.0, "lon": 2.0},
              "destination_place": {"id": "DC2", "kind": "distribution_centre", "name": "Centre 2", "lat": 30.5, "lon": 114.2}}
    places = places_from_details([("DC1", "RC-a", details), ("S-1", "DC2", supply), ("DC3", "RC-b", None)])
    assert set(places) == {"DC1", "DC2"}  # no position stated for RC-a, none at all for DC3; sites come from the registry
    assert places["DC2"] == Place("DC2", "distribution_centre", "Centre 2", 30.5, 114.2)
