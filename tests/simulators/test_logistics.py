"""The simulated logistics system against the real simulated sites (fleet) over the real Mosquitto
and Kafka: deliveries report what the site really handed over (short pick = short delivery, nothing
= failed, no answer = failed after the timeout), cancels honoured before the pick, duplicate orders
driven once, a replayed pick command never picks twice and is answered again."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from vreserve.site_credentials import remove_site_credentials
from vreserve.registry_generate import generate_registry
from simulators.fleet import Fleet
from simulators.logistics import LogisticsSimulator, PickAnswer, Timing, schedule
from vreserve import topics
from vreserve.schemas.common import SchemaError
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus
from vreserve.mqtt import connect as mqtt_connect, new_client


def test_schedule_is_deterministic_ordered_and_fails_the_given_share():
    t = Timing(accept_s=1.0, pick_s=2.0, deliver_s=4.0, jitter=0.3, fail_rate=0.1)
    a = schedule("O-1", t)
    assert a == schedule("O-1", t)
    assert 0 < a[0] < a[1] < a[2]
    fails = sum(schedule(f"O-{i}", t)[3] for i in range(2000))
    assert 150 < fails < 250
    assert not any(schedule(f"O-{i}", Timing(fail_rate=0.0))[3] for i in range(200))


def test_pick_answer_parsing_is_strict():
    ok = PickAnswer.from_mqtt("vr/v1/sites/s1/picked", json.dumps(
        {"v": 1, "order_id": "O-1", "material": "medicine", "requested": 5, "picked": 3, "unit": "box",
         "ts": "2026-11-22T04:00:00.000Z", "reason": "short"}).encode())
    assert (ok.site_id, ok.order_id, ok.picked, ok.reason) == ("s1", "O-1", 3.0, "short")
    for topic, payload in [("vr/v1/sites/s1/stock", b"{}"), ("vr/v1/sites/s1/picked", b"{broken"),
                           ("vr/v1/sites/s1/picked", b'{"v":1,"order_id":"O","requested":1,"picked":-1,"ts":"x"}'),
                           ("vr/v1/sites/s1/picked", b'{"v":2}')]:
        with pytest.raises(SchemaError):
            PickAnswer.from_mqtt(topic, payload)


def _order(unique: str, n: int, leg: str, origin: str, dest: str, qty: float, material: str = "medicine",
           unit: str = "box") -> DispatchOrder:
    return DispatchOrder(order_id=f"O-{unique}-{n}", plan_id=f"P-{unique}", emergency_id=f"E-{unique}",
                         region="r", period=1, leg=leg, origin=origin, destination=dest, material=material,
                         qty=qty, unit=unit, created_at=datetime.now(timezone.utc))


@pytest.mark.services
def test_deliveries_are_what_the_sites_really_picked(settings, unique):
    from kafka import TopicPartition
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from vreserve.kafka_admin import ensure_topics

    # topics of its own: the simulator reads its topic from the beginning, and other tests of the
    # session publish orders too
    settings = settings.with_(topic_prefix=f"{settings.topic_prefix}{unique}.")
    ensure_topics(settings, [topics.DISPATCH_ORDERS, topics.ORDER_STATUS, topics.LOGISTICS_DEAD_LETTER])
    reg = generate_registry(3, seed=4, id_prefix=f"l{unique}-", materials_per_site=4)
    rich, empty, full = (f"l{unique}-0000{i}" for i in (1, 2, 3))
    fleet = Fleet(settings, reg, interval_s=1.0, auth="per-site", seed=5, replenish=False)
    addr = settings.mqtt
    watcher = new_client(addr, None)
    answers: list[dict] = []
    subscribed = threading.Event()
    watcher.on_connect = lambda c, *a: c.subscribe(topics.mqtt_picked_topic("+"), qos=1)
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = lambda c, u, m: answers.append(json.loads(m.payload)) if m.topic.split("/")[3] in reg.sites else None
    mqtt_connect(watcher, addr)
    watcher.loop_start()
    sim = LogisticsSimulator(settings, Timing(accept_s=0.3, pick_s=0.6, deliver_s=1.0, jitter=0.1, pick_timeout_s=2.0),
                             group=settings.group(f"logistics-{unique}"), say=lambda m: None)
    th = threading.Thread(target=sim.run, daemon=True)
    status_reader = kafka_clients.consumer(settings, ADMIN, group_id=None)
    try:
        assert subscribed.wait(10)
        fleet.start()
        assert fleet.wait_connected(20)
        fleet.apply_pick(empty, f"drain-{unique}", "medicine", 10 ** 9, "box")  # the site now holds none
        assert fleet.stock(empty)["medicine"] == 0
        th.start()
        name = settings.topic(topics.ORDER_STATUS)
        parts = [TopicPartition(name, p) for p in status_reader.partitions_for_topic(name)]
        status_reader.assign(parts)
        status_reader.seek_to_beginning(*parts)
        have = fleet.stock(rich)["medicine"]
        short = _order(unique, 1, "supply", rich, "DC1", have + 50)  # more than the site holds
        nothing = _order(unique, 2, "supply", empty, "DC1", 5)
        whole = _order(unique, 3, "supply", full, "DC2", 3)
        delivery = _order(unique, 4, "delivery", "DC1", "RC1", 7)
        doomed = _order(unique, 5, "supply", full, "DC2", 2)
        ghost = _order(unique, 6, "supply", f"nowhere-{unique}", "DC1", 4)  # no site answers
        producer = kafka_clients.producer(settings, ADMIN, acks="all")
        topic = settings.topic(topics.DISPATCH_ORDERS)
        for o in (short, nothing, whole, delivery, doomed, ghost, short):  # `short` twice: driven once
            producer.send(topic, key=o.destination.encode(), value=o.to_json())
        producer.send(topic, key=b"DC2", value=CancelRecord(doomed.order_id, doomed.emergency_id, "DC2",
                                                          "superseded", datetime.now(timezone.utc)).to_json())
        producer.send(topic, key=b"x", value=b"{broken")  # rejected, not fatal
        producer.flush()
        producer.close()
        final: dict[str, OrderStatus] = {}
        statuses: list[OrderStatus] = []
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and len(final) < 6:
            for _tp, recs in status_reader.poll(timeout_ms=200).items():
                for r in recs:
                    st = OrderStatus.from_json(r.value)
                    statuses.append(st)
                    if st.status in ("delivered", "failed", "cancelled"):
                        final[st.order_id] = st
        by_order: dict[str, list[str]] = {}
        for st in statuses:
            by_order.setdefault(st.order_id, []).append(st.status)
        outcome = {p.order_id: p for p in fleet.pick_log if p.status == "applied"}
        # short pick -> short delivery with what the site really handed over, and the reason
        picked = outcome[short.order_id].applied
        assert 0 < picked < short.qty
        assert by_order[short.order_id] == ["accepted", "in_transit", "delivered"]
        assert final[short.order_id].qty == picked and "short pick" in final[short.order_id].reason
        transit = next(s for s in statuses if s.order_id == short.order_id and s.status == "in_transit")
        assert transit.qty == picked
        assert fleet.stock(rich)["medicine"] == 0
        # nothing at the site -> failed with the site's reason, never in transit
        assert by_order[nothing.order_id] == ["accepted", "failed"]
        assert "holds no medicine" in final[nothing.order_id].reason
        # enough at the site -> delivered in full
        assert by_order[whole.order_id] == ["accepted", "in_transit", "delivered"]
        assert final[whole.order_id].qty == 3 and final[whole.order_id].reason is None
        # delivery legs (centre -> rescue centre) are not picked at a site
        assert by_order[delivery.order_id] == ["accepted", "in_transit", "delivered"]
        assert final[delivery.order_id].qty == 7
        assert by_order[doomed.order_id] == ["cancelled"]
        # no answer -> failed after the timeout
        assert by_order[ghost.order_id] == ["accepted", "failed"]
        assert final[ghost.order_id].reason == "site did not confirm the pick within 2 s"
        assert len({s.status_id for s in statuses}) == len(statuses)
        assert sim.counters.duplicates == 1 and sim.counters.rejected == 1 and sim.counters.picks_sent == 4
        assert sim.counters.short_picks == 1 and sim.counters.pick_timeouts == 1

        # a restarted carrier re-sends the pick command: no second pick, the original answer again
        applied = fleet.counters.picks_applied
        first = [a for a in answers if a["order_id"] == whole.order_id]
        assert len(first) == 1 and first[0]["picked"] == 3
        cmd = {"v": 1, "order_id": whole.order_id, "material": "medicine", "qty": 3, "unit": "box"}
        watcher.publish(topics.mqtt_pick_topic(full), json.dumps(cmd), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len([a for a in answers if a["order_id"] == whole.order_id]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = [a for a in answers if a["order_id"] == whole.order_id]
        assert len(again) == 2 and again[1] == again[0]
        assert fleet.counters.picks_applied == applied and fleet.counters.picks_duplicate == 1
    finally:
        sim.stop()
        if th.is_alive():
            th.join(10)
        status_reader.close()
        fleet.stop(end_sessions=True)
        remove_site_credentials(settings, list(reg.sites))
        watcher.loop_stop()
        watcher.disconnect()
