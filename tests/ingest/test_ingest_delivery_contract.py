"""MQTT delivery rules of contract v1 on the real broker (issue 11): the bridge is ready only once
its subscription is acknowledged; QoS 0 and retained replays of stock reports are dead-lettered
with a reason; an empty message (clearing a retained report) is acknowledged, never dead-lettered."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from ingest.bridge import Bridge, BridgeConfig
from vreserve import topics
from vreserve.schemas.readings import DeadLetter, ReadingBatch

pytestmark = pytest.mark.services


def _report(registry, site: str, seq: int) -> bytes:
    mat = next(iter(registry.sites[site].materials))
    return json.dumps({"v": 1, "site_id": site, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "seq": seq, "readings": [{"material": mat, "qty": 3, "unit": registry.materials[mat].unit}]}).encode()


def test_bridge_is_ready_only_after_its_subscription_is_acknowledged(settings, registry, unique, service_client,
                                                                     topic_reader) -> None:
    # the CONNACK alone does not make the bridge ready: the SUBSCRIBE may not be in place yet
    idle = Bridge(settings, BridgeConfig(client_id=f"vr-test-idle-{unique}"))
    idle._on_connect(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), None, mqtt.ConnectFlags(session_present=False),
                     mqtt.ReasonCode(mqtt.PacketTypes.CONNACK, identifier=0), None)
    assert not idle._connected.is_set(), "ready before the SUBACK"
    # and a report published the moment start() returns reaches Kafka (a brand-new session)
    site = sorted(registry.sites)[0]
    bridge = Bridge(settings, BridgeConfig(client_id=f"vr-test-fresh-{unique}", linger_ms=5))
    bridge.start()
    try:
        service_client().publish(topics.mqtt_stock_topic(site), _report(registry, site, 4242), qos=1).wait_for_publish(10)
        got = topic_reader(settings, topics.READINGS, lambda rs: any(
            ReadingBatch.from_json(r.value).report.seq == 4242 for r in rs), timeout=30)
        assert any(ReadingBatch.from_json(r.value).report.seq == 4242 for r in got)
    finally:
        bridge.stop(end_mqtt_session=True)


@pytest.mark.slow
def test_qos0_and_retained_reports_are_dead_lettered_and_clearing_is_not(settings, registry, unique, service_client,
                                                                        topic_reader) -> None:
    site_q0, site_ret = sorted(registry.sites)[1:3]
    client = service_client()
    retained = _report(registry, site_ret, 7001)
    client.publish(topics.mqtt_stock_topic(site_ret), retained, qos=1, retain=True).wait_for_publish(10)
    bridge = Bridge(settings, BridgeConfig(client_id=f"vr-test-qos-{unique}", linger_ms=5))
    bridge.start()  # a new subscription: the broker replays the retained report to it
    try:
        q0 = _report(registry, site_q0, 7002)
        client.publish(topics.mqtt_stock_topic(site_q0), q0, qos=0)
        # clear the retained report: an empty retained message on the same topic
        client.publish(topics.mqtt_stock_topic(site_ret), b"", qos=1, retain=True).wait_for_publish(10)

        def letters(rs):
            return {DeadLetter.from_json(r.value).payload: DeadLetter.from_json(r.value) for r in rs
                    if DeadLetter.from_json(r.value).payload in (q0, retained)}
        found = letters(topic_reader(settings, topics.READINGS_DEAD_LETTER, lambda rs: len(letters(rs)) >= 2,
                                     timeout=30))
        deadline = time.monotonic() + 10
        while bridge.counters.cleared < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert q0 in found and "QoS 0" in found[q0].reason and found[q0].context["qos"] == 0
        # Mosquitto 2.0 replays a retained message to a new shared subscription too
        assert retained in found, "the retained report was not replayed (or was forwarded)"
        assert "retained stock report" in found[retained].reason and found[retained].context["retain"]
        assert bridge.counters.cleared >= 1, "the empty (clearing) message was not acknowledged as such"
        assert not [d for d in topic_reader(settings, topics.READINGS_DEAD_LETTER, lambda rs: False, timeout=2)
                    if DeadLetter.from_json(d.value).payload == b""], "clearing a retained report was dead-lettered"
    finally:
        bridge.stop(end_mqtt_session=True)


def test_a_sites_owner_learns_why_its_reports_are_refused(settings, registry, bridge_for_owner, service_client) -> None:
    """`vreserve ingest dead-letters --site S` lists that site's refusals with their reasons."""
    from click.testing import CliRunner

    from vreserve.cli import cli

    site, other = sorted(registry.sites)[3:5]
    client = service_client()
    client.publish(topics.mqtt_stock_topic(site), b'{"v":1,"site_id":"' + site.encode() + b'","seq":"x"}',
                   qos=1).wait_for_publish(10)
    client.publish(topics.mqtt_stock_topic(other), b"junk", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 30
    while bridge_for_owner.counters.dead_lettered < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    env = {"VR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "VR_MQTT_URL": settings.mqtt_url,
           "VR_PG_DSN": settings.pg_dsn, "VR_TOPIC_PREFIX": settings.topic_prefix}
    res = CliRunner().invoke(cli, ["ingest", "dead-letters", "--site", site, "--since", "10m"], env=env,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "schema" in res.output and "1 refused report(s) of site" in res.output, res.output
    assert "junk" not in res.output


@pytest.fixture
def bridge_for_owner(settings, unique):
    b = Bridge(settings, BridgeConfig(client_id=f"vr-test-owner-{unique}", linger_ms=5))
    b.start()
    yield b
    b.stop(end_mqtt_session=True)
