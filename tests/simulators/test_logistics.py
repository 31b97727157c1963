"""The simulated logistics system: deterministic fate per order, status flow, picks over MQTT,
cancels honoured before the pick, duplicate orders driven once."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest

from simulators.logistics import LogisticsSimulator, Timing, schedule
from vreserve import topics
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus


def test_schedule_is_deterministic_ordered_and_fails_the_given_share():
    t = Timing(accept_s=1.0, pick_s=2.0, deliver_s=4.0, jitter=0.3, fail_rate=0.1)
    a = schedule("O-1", t)
    assert a == schedule("O-1", t)
    assert 0 < a[0] < a[1] < a[2]
    fails = sum(schedule(f"O-{i}", t)[3] for i in range(2000))
    assert 150 < fails < 250
    assert not any(schedule(f"O-{i}", Timing(fail_rate=0.0))[3] for i in range(200))


def _order(unique: str, n: int, leg: str, origin: str, dest: str, qty: float) -> DispatchOrder:
    return DispatchOrder(order_id=f"O-{unique}-{n}", plan_id=f"P-{unique}", emergency_id=f"E-{unique}",
                         region="r", period=1, leg=leg, origin=origin, destination=dest, material="medicine",
                         qty=qty, unit="box", created_at=datetime.now(timezone.utc))


@pytest.mark.services
def test_logistics_flow_picks_cancel_and_duplicates(settings, unique):
    import paho.mqtt.client as mqtt
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from vreserve.kafka_admin import ensure_topics

    # topics of its own: the simulator reads its topic from the beginning, and other tests of the
    # session publish orders too
    settings = settings.with_(topic_prefix=f"{settings.topic_prefix}{unique}.")
    ensure_topics(settings, [topics.DISPATCH_ORDERS, topics.ORDER_STATUS])

    site = f"site-{unique}"
    picks: list[dict] = []
    addr = settings.mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(addr.username, addr.password)
    subscribed = threading.Event()
    client.on_connect = lambda c, *a: c.subscribe(f"vr/v1/sites/{site}/commands/pick", qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: picks.append(json.loads(m.payload))
    client.connect(addr.host, addr.port)
    client.loop_start()
    assert subscribed.wait(10)

    sim = LogisticsSimulator(settings, Timing(accept_s=1.0, pick_s=1.5, deliver_s=2.0, jitter=0.1),
                             group=f"t-logistics-{unique}", say=lambda m: None)
    th = threading.Thread(target=sim.run, daemon=True)
    th.start()
    status_reader = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    name = settings.topic(topics.ORDER_STATUS)
    parts = [TopicPartition(name, p) for p in status_reader.partitions_for_topic(name)]
    status_reader.assign(parts)
    status_reader.seek_to_end(*parts)
    status_reader.poll(timeout_ms=100)
    try:
        supply = _order(unique, 1, "supply", site, "DC1", 12.0)
        delivery = _order(unique, 2, "delivery", "DC1", "RC1", 7.0)
        doomed = _order(unique, 3, "supply", site, "DC2", 5.0)
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        topic = settings.topic(topics.DISPATCH_ORDERS)
        for o in (supply, delivery, doomed, supply):  # the supply order twice: driven once
            producer.send(topic, key=o.destination.encode(), value=o.to_json())
        producer.send(topic, key=b"DC2", value=CancelRecord(doomed.order_id, doomed.emergency_id, "DC2",
                                                          "superseded", datetime.now(timezone.utc)).to_json())
        producer.send(topic, key=b"x", value=b"{broken")  # rejected, not fatal
        producer.flush()
        producer.close()
        statuses: list[OrderStatus] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len([s for s in statuses if s.status == "delivered"]) < 2:
            for _tp, recs in status_reader.poll(timeout_ms=200).items():
                statuses += [OrderStatus.from_json(r.value) for r in recs]
        by_order: dict[str, list[OrderStatus]] = {}
        for s in statuses:
            by_order.setdefault(s.order_id, []).append(s)
        assert [s.status for s in by_order[supply.order_id]] == ["accepted", "in_transit", "delivered"]
        assert by_order[supply.order_id][-1].qty == 12.0
        assert [s.status for s in by_order[delivery.order_id]] == ["accepted", "in_transit", "delivered"]
        assert [s.status for s in by_order[doomed.order_id]] == ["cancelled"]
        assert len({s.status_id for s in statuses}) == len(statuses)
        time.sleep(0.5)
        assert picks == [{"v": 1, "order_id": supply.order_id, "material": "medicine", "qty": 12.0, "unit": "box"}]
        assert sim.counters.duplicates == 1 and sim.counters.rejected == 1 and sim.counters.picks_sent == 1
    finally:
        sim.stop()
        th.join(10)
        status_reader.close()
        client.loop_stop()
        client.disconnect()
