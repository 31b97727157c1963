"""Every dispatch order on the topic carries what a carrier needs (contract v2), with units."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.dispatcher.carrier_helpers import PERIOD_S, plan_first_period
from tests.dispatcher.helpers import TopicReader, wait_for
from vreserve import topics
from vreserve.schemas.common import parse_ts
from vreserve.schemas.dispatch import DispatchOrder, decode_dispatch_record

pytestmark = pytest.mark.services

CATALOGUE = {"medicine": ("ambient", 0.25, 0.0008), "medical_alcohol": ("flammable", 0.95, 0.0012),
             "ventilator": ("fragile", 25.0, 0.15), "pork": ("frozen", 1.0, 0.0012)}


def assert_carrier_fields(order: dict, declared) -> None:
    """The v2 fields of one order as JSON (topic record or API item), checked against the inputs."""
    if "v" in order:  # the topic's record; the API's item is the order's row
        assert order["v"] == 2
    origin, dest = order["origin_place"], order["destination_place"]
    assert (origin["id"], dest["id"]) == (order["origin"], order["destination"])
    if order["leg"] == "supply":
        assert origin["kind"] == "site" and dest["kind"] == "distribution_centre"
        assert origin["address"].endswith("(illustrative address)")
        assert origin["contact"]["phone"].startswith("+86 000 ")
    else:
        assert origin["kind"] == "distribution_centre" and dest["kind"] == "rescue_centre"
        assert dest["name"].endswith("district rescue centre")
    for end in (origin, dest):
        assert end["name"] and end["address"] and end["contact"]["name"]
        assert 30.0 < end["lat"] < 31.0 and 114.0 < end["lon"] < 115.0  # Wuhan, WGS 84 degrees
    start = declared  # period 1 of 60 s
    pick, drop = order["pick_window"], order["delivery_window"]
    assert parse_ts(pick["start"]) >= start and parse_ts(pick["end"]) == start + timedelta(seconds=PERIOD_S)
    assert drop == pick
    # not accepted by the start of period 2, period 2's plan may supersede it
    assert parse_ts(order["accept_by"]) == start + timedelta(seconds=PERIOD_S)
    handling, kg, m3 = CATALOGUE[order.get("material") or order["material_id"]]  # the API names it material_id
    mat = order["material_details"]
    assert mat["handling"] == handling and mat["weight_kg_per_unit"] == kg and mat["volume_m3_per_unit"] == m3
    assert mat["name"]
    assert order["total_weight_kg"] == pytest.approx(float(order["qty"]) * kg)
    assert order["total_volume_m3"] == pytest.approx(float(order["qty"]) * m3)


def test_orders_on_the_topic_carry_both_ends_windows_and_handling(settings, unique):
    region = f"cd{unique[-8:]}".lower()
    emergency_id, declared = plan_first_period(settings, region)
    reader = TopicReader(settings, topics.DISPATCH_ORDERS)
    try:
        def mine():
            reader.poll(0.5)
            return [o for o in reader.json() if o.get("emergency_id") == emergency_id and o["kind"] == "order"]
        orders = wait_for(lambda: mine() or None, 30, what="the plan's orders on the topic")
    finally:
        reader.close()
    assert {o["leg"] for o in orders} == {"supply", "delivery"}, "the wuhan plan has both legs in period 1"
    assert "pork" in {o["material"] for o in orders}
    for o in orders:
        assert o["v"] == 2
        assert_carrier_fields(o, declared)
        # and the project's own decoder (the logistics simulator's, the webhooks') reads it back
        back = decode_dispatch_record(DispatchOrder.from_payload(o).to_json())
        assert back.details is not None and back.to_payload() == o


def test_a_v1_order_stays_v1_and_an_unknown_field_in_v2_is_refused():
    from vreserve.schemas.common import SchemaError, utc_now

    v1 = DispatchOrder("O-1", "P-1", "E-1", "r", 1, "delivery", "DC-1", "RC-1", "medicine", 5.0, "box",
                       utc_now().replace(microsecond=0))
    assert v1.to_payload()["v"] == 1 and "origin_place" not in v1.to_payload()
    assert decode_dispatch_record(v1.to_json()) == v1
    with pytest.raises(SchemaError, match="origin_place"):
        DispatchOrder.from_payload({**v1.to_payload(), "v": 2})  # v2 without its details
    with pytest.raises(SchemaError, match="unsupported dispatch order version"):
        DispatchOrder.from_payload({**v1.to_payload(), "v": 3})
    with pytest.raises(SchemaError, match="unknown field"):
        DispatchOrder.from_payload({**v1.to_payload(), "origin_place": {}})  # v1 with a v2 field
