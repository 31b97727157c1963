"""Smoke tests on the real services: each answers, and round trips work over real connections."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka.admin import NewTopic

from vreserve import kafka_clients
from vreserve.db import connect
from vreserve.kafka_access import ADMIN
from vreserve.settings import Settings
from vreserve.mqtt import connect as mqtt_connect, new_client

pytestmark = pytest.mark.services


def test_kafka_round_trip_with_consumer_group(base_settings: Settings, unique: str) -> None:
    topic = f"smoke-{unique}"
    admin = kafka_clients.admin(base_settings, ADMIN)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = kafka_clients.producer(base_settings, ADMIN, acks="all", enable_idempotence=True)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=20)
    producer.close()

    consumer = kafka_clients.consumer(base_settings, ADMIN, topic, group_id=f"smoke-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.update((r.key, r.value) for r in records)
    consumer.commit()
    # The group's committed offsets cover everything consumed.
    committed = sum(consumer.committed(tp) or 0 for tp in consumer.assignment())
    consumer.close()
    assert got == sent
    assert committed == len(sent)


def test_mqtt_publish_subscribe_qos1(base_settings: Settings, unique: str) -> None:
    addr = base_settings.mqtt
    topic = f"vr/smoke/{unique}"
    received: list[bytes] = []
    subscribed = threading.Event()
    done = threading.Event()

    sub = new_client(addr, f"smoke-sub-{unique}")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()

    def on_message(client, userdata, message):
        assert message.qos == 1
        received.append(message.payload)
        if len(received) == 5:
            done.set()

    sub.on_message = on_message
    mqtt_connect(sub, addr)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "subscription not acknowledged"
        pub = new_client(addr, f"smoke-pub-{unique}")
        mqtt_connect(pub, addr)
        pub.loop_start()
        infos = [pub.publish(topic, f"m{i}".encode(), qos=1) for i in range(5)]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
        pub.loop_stop()
        pub.disconnect()
        assert done.wait(10)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert received == [f"m{i}".encode() for i in range(5)]


def test_mqtt_rejects_wrong_password(base_settings: Settings) -> None:
    addr = base_settings.mqtt
    result: dict = {}
    client = new_client(addr, f"smoke-bad-{uuid.uuid4().hex[:6]}", username=addr.username, password="not-the-password")
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
    mqtt_connect(client, addr)
    client.loop_start()
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    assert "rc" in result and result["rc"].is_failure


def test_postgres_query(settings: Settings) -> None:
    with connect(settings.pg_dsn) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone()[0] == 42
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == sorted(set(versions))
