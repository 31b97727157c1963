"""The simulated site fleet: pick commands over real MQTT, fault switches, status topic."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from vreserve.site_credentials import remove_site_credentials
from vreserve.registry_generate import generate_registry
from simulators.fleet import Faults, Fleet
from vreserve import topics
from vreserve.mqtt import connect as mqtt_connect, new_client


def test_fault_switches_parse() -> None:
    assert Faults.parse("none") == Faults()
    assert Faults.parse("duplicates=0.5,spike=0.1").duplicates == 0.5
    assert Faults.parse("all").disconnect > 0
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("gremlins=1")
    with pytest.raises(ValueError, match="probability"):
        Faults.parse("duplicates=3")


def test_picks_in_process_never_go_below_zero_and_apply_once() -> None:
    reg = generate_registry(5, seed=1, id_prefix="unit-", materials_per_site=4)
    fleet = Fleet(None, reg, 10.0, auth="gateway", report_on_pick=False)  # no network: state only
    fleet._build_state()
    site = "unit-00002"
    before = fleet.stock(site)["medicine"]
    a = fleet.apply_pick(site, "o-1", "medicine", 3, "box")
    assert a.status == "applied" and fleet.stock(site)["medicine"] == pytest.approx(before - 3)
    assert fleet.apply_pick(site, "o-1", "medicine", 3, "box").status == "duplicate"
    assert fleet.stock(site)["medicine"] == pytest.approx(before - 3)
    big = fleet.apply_pick(site, "o-2", "medicine", 10 ** 9, "box")
    assert big.status == "applied" and big.shortfall > 0 and fleet.stock(site)["medicine"] == 0
    assert fleet.apply_pick(site, "o-3", "medicine", 1, "kg").status == "rejected"
    assert fleet.apply_pick(site, "o-4", "quilt", 1, "piece").status == "rejected"
    # Drift never goes below zero and never replenishes what was picked.
    st = fleet._sites[site]
    for _ in range(200):
        fleet._drift(st)
    assert fleet.stock(site)["medicine"] == 0 and min(st.qty) >= 0


@pytest.mark.services
def test_pick_commands_over_mqtt_lower_the_next_reading(settings, unique) -> None:
    reg = generate_registry(3, seed=2, id_prefix=f"f{unique}-", materials_per_site=4)
    site = f"f{unique}-00002"
    addr = settings.mqtt
    watcher = new_client(addr, f"vr-test-{uuid.uuid4().hex[:8]}")
    readings: list[dict] = []
    statuses: list[dict] = []
    answers: list[dict] = []

    def on_message(c, u, m):
        if m.topic.endswith("/stock"):
            readings.append(json.loads(m.payload))
        elif m.topic.endswith("/picked"):
            answers.append(json.loads(m.payload))
        else:
            statuses.append(json.loads(m.payload))

    watcher.on_message = on_message
    mqtt_connect(watcher, addr)
    watcher.loop_start()
    watcher.subscribe([(topics.mqtt_stock_topic(site), 1), (topics.mqtt_status_topic(site), 1),
                       (topics.mqtt_picked_topic(site), 1)])
    fleet = Fleet(settings, reg, interval_s=1.0, auth="per-site", seed=3)
    try:
        fleet.start()
        assert fleet.wait_connected(20)
        deadline = time.monotonic() + 10
        while not readings and time.monotonic() < deadline:
            time.sleep(0.05)
        assert readings, "no reading from the fleet"
        start_qty = fleet.stock(site)["medicine"]
        cmd = {"v": 1, "order_id": f"o-{unique}-1", "material": "medicine", "qty": 7, "unit": "box"}
        for _ in range(3):  # replays of the same order
            watcher.publish(topics.mqtt_pick_topic(site), json.dumps(cmd), qos=1).wait_for_publish(5)
        huge = {"v": 1, "order_id": f"o-{unique}-2", "material": "medical_alcohol", "qty": 10 ** 9, "unit": "litre"}
        watcher.publish(topics.mqtt_pick_topic(site), json.dumps(huge), qos=1).wait_for_publish(5)
        watcher.publish(topics.mqtt_pick_topic(site), b"not json", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while fleet.counters.picks_applied + fleet.counters.picks_duplicate + fleet.counters.picks_rejected < 5:
            assert time.monotonic() < deadline, f"picks not applied: {fleet.counters}"
            time.sleep(0.05)
        c = fleet.counters
        assert (c.picks_applied, c.picks_duplicate, c.picks_rejected) == (2, 2, 1)
        assert fleet.stock(site)["medical_alcohol"] == 0 and c.shortfall_qty > 0
        # every command with a readable order id is answered; replays get the original answer
        deadline = time.monotonic() + 5
        while len(answers) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = [a for a in answers if a["order_id"] == cmd["order_id"]]
        assert len(first) == 3 and first[0] == first[1] == first[2], first
        assert first[0]["picked"] == first[0]["requested"] == 7 and first[0]["unit"] == "box"
        assert "reason" not in first[0]
        (short,) = [a for a in answers if a["order_id"] == huge["order_id"]]
        assert 0 <= short["picked"] < short["requested"] == 10 ** 9 and short["reason"]
        assert len(answers) == 4  # "not json" names no order: nothing to answer
        n = len(readings)
        deadline = time.monotonic() + 5
        while len(readings) == n and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = {r["material"]: r["qty"] for r in readings[-1]["readings"]}
        assert latest["medical_alcohol"] == 0
        assert latest["medicine"] <= start_qty - 7 + 1e-6  # consumption may lower it a little more
        assert [r["seq"] for r in readings] == sorted(r["seq"] for r in readings)
        assert any(s["status"] == "online" for s in statuses)
    finally:
        fleet.stop(end_sessions=True)
        remove_site_credentials(settings, list(reg.sites))
    deadline = time.monotonic() + 5
    while statuses[-1]["status"] != "offline" and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.disconnect()
    watcher.loop_stop()
    assert statuses[-1]["status"] == "offline"


@pytest.mark.services
def test_dropped_connection_fires_last_will_and_reconnects(settings, unique) -> None:
    reg = generate_registry(2, seed=2, id_prefix=f"d{unique}-", materials_per_site=2)
    site = f"d{unique}-00002"
    addr = settings.mqtt
    watcher = new_client(addr, f"vr-test-{uuid.uuid4().hex[:8]}")
    statuses: list[dict] = []
    watcher.on_message = lambda c, u, m: statuses.append(json.loads(m.payload))
    mqtt_connect(watcher, addr)
    watcher.loop_start()
    watcher.subscribe(topics.mqtt_status_topic(site), 1)
    fleet = Fleet(settings, reg, interval_s=0.2, auth="per-site", faults=Faults(disconnect=0.2, reconnect_after_s=0.5), seed=1)
    try:
        fleet.start()
        deadline = time.monotonic() + 20
        while fleet.counters.reconnects < 2 and time.monotonic() < deadline:
            fleet.check()
            time.sleep(0.05)
        assert fleet.counters.disconnects >= 2 and fleet.counters.reconnects >= 2
        assert any(s.get("reason") == "connection lost" for s in statuses), statuses[-5:]
    finally:
        fleet.stop(end_sessions=True)
        watcher.disconnect()
        watcher.loop_stop()
        remove_site_credentials(settings, list(reg.sites))
