"""An order read through the API carries what a carrier needs, under the topic's names and units."""
from __future__ import annotations

import pytest

from tests.dispatcher.carrier_helpers import plan_first_period
from tests.dispatcher.test_carrier_details import assert_carrier_fields

pytestmark = pytest.mark.services


def test_api_orders_carry_both_ends_windows_and_handling(world, unique):
    region = f"ca{unique[-8:]}".lower()
    emergency_id, declared = plan_first_period(world.settings, region)
    with world.client("viewer") as c:
        page = c.get("/api/v1/orders", params={"emergency_id": emergency_id, "limit": 500})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert {o["leg"] for o in items} == {"supply", "delivery"}
        for o in items:
            assert_carrier_fields(o, declared)
        one = c.get(f"/api/v1/orders/{items[0]['order_id']}")
        assert one.status_code == 200, one.text
        assert_carrier_fields(one.json(), declared)
