"""Kafka's refusals, proven on the real broker: no plaintext, no wrong password, and each
component principal limited to its own topics and groups (vreserve/kafka_access.py)."""
from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import pickle
import stat
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError

from deploy.kafka_security import CONTROLLER_USER
from vreserve import kafka_clients, topics
from vreserve.kafka_access import ADMIN, BRIDGE, COMPONENTS, LOGISTICS, OPERATIONS, STREAM, carrier_principal, grants
from vreserve.kafka_admin import ensure_acls, ensure_topics, provision_principal
from vreserve.settings import Settings

pytestmark = pytest.mark.services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _secured(base_settings: Settings) -> None:
    if not kafka_clients.secured(base_settings):
        pytest.skip("the broker runs with VR_KAFKA_SECURITY=PLAINTEXT")


@pytest.fixture(scope="module")
def settings(settings: Settings):
    """Topics of this module's own (and the components' grants under their prefix): the records it
    writes to prove a right (``{}`` to mode, readings...) are not contracts' records, and must not
    reach the session's topics that other tests decode."""
    own = settings.with_(topic_prefix=f"{settings.topic_prefix}ks{uuid.uuid4().hex[:6]}.")
    if kafka_clients.secured(own):
        ensure_topics(own)
    yield own
    admin = kafka_clients.admin(own, ADMIN)
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(own.topic_prefix)])
    finally:
        admin.close()


def _send(settings: Settings, principal: str, logical: str) -> None:
    """Produce one record as ``principal`` and wait for the broker's answer (raises on refusal)."""
    producer = kafka_clients.producer(settings, principal, max_block_ms=10000, request_timeout_ms=10000,
                                      retries=0)
    try:
        producer.send(settings.topic(logical), key=b"k", value=b"{}").get(timeout=20)
    finally:
        producer.close(2)


def _list_topics(settings: Settings, principal: str) -> list[str]:
    """Log in and list topics; a refused login ends in KafkaTimeoutError ("Unable to bootstrap")."""
    admin = kafka_clients.admin(settings, principal, request_timeout_ms=4000, bootstrap_timeout_ms=4000)
    try:
        return admin.list_topics()
    finally:
        admin.close()


def _broker_log_lines(settings: Settings, text: str) -> int | None:
    """How many lines of the local runner's broker log hold ``text`` (None: no such log here)."""
    log = settings.state_dir / "kafka" / "kafka.log"
    return log.read_text(errors="replace").count(text) if log.exists() else None


def test_a_plaintext_client_is_refused(base_settings: Settings) -> None:
    """Nothing answers Kafka's protocol in the clear: the only client listener is SASL_SSL."""
    assert _list_topics(base_settings, ADMIN) is not None  # control: the same client over SASL_SSL
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        _list_topics(base_settings.with_(kafka_security="PLAINTEXT"), ADMIN)


def test_a_wrong_password_is_refused(base_settings: Settings, tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / f"{kafka_clients.kafka_secret_name(STREAM)}.secret").write_text("not-the-password\n")
    wrong = base_settings.with_(secrets_dir=str(secrets))
    refusals = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    before = _broker_log_lines(base_settings, refusals)
    assert _list_topics(base_settings, STREAM) is not None  # control: the right password logs in
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        _list_topics(wrong, STREAM)
    if before is not None:  # the broker says why
        assert _broker_log_lines(base_settings, refusals) > before


def test_logistics_may_not_write_mode_nor_read_readings(settings: Settings) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        _send(settings, LOGISTICS, topics.MODE)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(settings, LOGISTICS, topics.DISPATCH_ORDERS)
    reader = kafka_clients.consumer(settings, LOGISTICS, group_id=None, request_timeout_ms=10000)
    try:
        tp = TopicPartition(settings.topic(topics.READINGS), 0)
        reader.assign([tp])
        with pytest.raises(TopicAuthorizationFailedError):
            reader.seek_to_beginning(tp)
            reader.poll(timeout_ms=5000)
            reader.position(tp)
    finally:
        reader.close()
    _send(settings, LOGISTICS, topics.ORDER_STATUS)  # what it is there for


def test_only_the_operations_principal_writes_mode(settings: Settings) -> None:
    for principal in (BRIDGE, STREAM, LOGISTICS):
        with pytest.raises(TopicAuthorizationFailedError):
            _send(settings, principal, topics.MODE)
    _send(settings, OPERATIONS, topics.MODE)


def test_the_stream_worker_principal_does_its_job(settings: Settings) -> None:
    """Reads readings in its own group, writes alerts; may not write dispatch orders."""
    _send(settings, BRIDGE, topics.READINGS)
    _send(settings, STREAM, topics.ALERTS)
    consumer = kafka_clients.consumer(settings, STREAM, settings.topic(topics.READINGS),
                                      group_id=settings.group("stream"), auto_offset_reset="earliest",
                                      enable_auto_commit=False)
    try:
        got = []
        for _ in range(40):
            got += [r for recs in consumer.poll(timeout_ms=500).values() for r in recs]
            if got:
                break
        assert got, "the stream principal read nothing from the readings topic"
        consumer.commit()
    finally:
        consumer.close()
    with pytest.raises(TopicAuthorizationFailedError):
        _send(settings, STREAM, topics.DISPATCH_ORDERS)


def test_a_consumer_group_outside_the_principal_rule_is_refused(settings: Settings) -> None:
    from kafka.errors import GroupAuthorizationFailedError

    consumer = kafka_clients.consumer(settings, LOGISTICS, settings.topic(topics.DISPATCH_ORDERS),
                                      group_id=settings.group("dispatcher"), request_timeout_ms=10000)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in range(20):
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()


def test_a_rotated_secret_replaces_the_old_one(settings: Settings, tmp_path) -> None:
    """`vreserve kafka-principal --carrier ID [--rotate]`: a provisioned carrier reads orders and
    writes statuses; after rotation its old password is refused and the new one works."""
    carrier = f"c{uuid.uuid4().hex[:6]}"
    principal = carrier_principal(carrier)
    env = {**os.environ, "VR_TOPIC_PREFIX": settings.topic_prefix, "VR_SECRETS_DIR": settings.secrets_dir}
    cli = [sys.executable, "-m", "vreserve.cli", "kafka-principal", carrier, "--carrier"]
    first = subprocess.run(cli, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    path = kafka_clients.secret_file(settings, principal)
    old = path.read_text().strip()
    assert old not in first.stdout + first.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _send(settings, principal, topics.ORDER_STATUS)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(settings, principal, topics.DISPATCH_ORDERS)

    rotated = subprocess.run([*cli, "--rotate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    assert path.read_text().strip() != old
    _send(settings, principal, topics.ORDER_STATUS)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / path.name).write_text(old + "\n")
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        _list_topics(settings.with_(secrets_dir=str(stale)), principal)


def test_secrets_and_broker_config_are_private(base_settings: Settings) -> None:
    for principal in (ADMIN, *COMPONENTS):
        path = kafka_clients.secret_file(base_settings, principal)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    config = base_settings.state_dir / "kafka" / "server.properties"
    if config.exists():  # the local runner's broker
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        text = config.read_text()
        assert "PLAINTEXT://" not in text and f"User:{CONTROLLER_USER}" in text


def test_grants_are_exactly_the_rule() -> None:
    """Pure: a carrier reads dispatch orders and writes statuses, nothing else."""
    carrier = carrier_principal("acme")
    got = {(g.resource, g.name, g.operation) for g in grants(carrier, "p.")}
    assert got == {("topic", "p.dispatch-orders", "READ"), ("topic", "p.dispatch-orders", "DESCRIBE"),
                   ("topic", "p.order-status", "WRITE"), ("topic", "p.order-status", "DESCRIBE"),
                   ("group", "p.carrier-acme", "READ")}
    writers_of_mode = {p for p in COMPONENTS if any(g.name == "p.mode" and g.operation in ("WRITE", "ALL")
                                                     for g in grants(p, "p."))}
    assert writers_of_mode == {OPERATIONS}
    writers_of_orders = {p for p in COMPONENTS if any(g.name == "p.dispatch-orders" and g.operation == "WRITE"
                                                       for g in grants(p, "p."))}
    assert writers_of_orders == {"vr-dispatcher"}


def test_ensure_topics_as_a_component_does_not_grant(settings: Settings) -> None:
    """Only the admin grants ACLs; a component creating a topic it may not create is refused."""
    with pytest.raises(TopicAuthorizationFailedError):
        ensure_topics(settings.with_(topic_prefix=f"x{uuid.uuid4().hex[:6]}."), [topics.MODE], principal=LOGISTICS)


IDLE_MS = 1500  # the clients below drop idle connections fast, so they log in again soon after a rotation


def _frozen_producer(settings: Settings, principal: str):
    """A producer holding its password as a plain string (what every client did before
    ``LiveSecret``): the control that shows the clients below really log in again."""
    options = kafka_clients.connection_options(settings, principal)
    options["sasl_plain_password"] = str.__str__(options["sasl_plain_password"])
    return KafkaProducer(**options, acks="all", connections_max_idle_ms=IDLE_MS, max_block_ms=8000,
                         request_timeout_ms=8000, retries=0)


async def _aio_send(settings: Settings, principal: str, topic: str, rounds: list[float]) -> int:
    """One aiokafka producer (Faust's client library) sending once per delay in ``rounds``."""
    producer = kafka_clients.aio_producer(settings, principal, connections_max_idle_ms=IDLE_MS,
                                          request_timeout_ms=10000)
    await producer.start()
    sent = 0
    try:
        for delay in rounds:
            await asyncio.sleep(delay)
            await producer.send_and_wait(topic, key=b"k", value=b"{}")
            sent += 1
    finally:
        await producer.stop()
    return sent


def test_a_running_component_keeps_working_across_a_rotation(settings: Settings, tmp_path) -> None:
    """`kafka-principal --rotate` without a restart: producers built before the rotation (kafka-python
    and aiokafka) keep sending on their open connections, and after their idle connections were
    closed they log in again with the new secret read from the file; a client that kept the old
    password in memory, and a new connection with the old secret, are refused."""
    principal = carrier_principal(f"r{uuid.uuid4().hex[:6]}")
    path = provision_principal(settings, principal)
    ensure_acls(settings, [principal])
    old = path.read_text().strip()
    topic = settings.topic(topics.ORDER_STATUS)
    live = kafka_clients.producer(settings, principal, connections_max_idle_ms=IDLE_MS, max_block_ms=8000,
                                  request_timeout_ms=8000, retries=0)
    frozen = _frozen_producer(settings, principal)
    # the aiokafka producer: logs in now, rotation at ~2 s, then sends through ~8 s (re-logins included)
    with ThreadPoolExecutor(1) as pool:
        aio = pool.submit(asyncio.run, _aio_send(settings, principal, topic, [0.0, 3.0, 3.0, 3.0]))
        try:
            for producer in (live, frozen):
                producer.send(topic, key=b"k", value=b"{}").get(timeout=20)
            time.sleep(2.0)
            provision_principal(settings, principal, rotate=True)
            assert path.read_text().strip() != old
            assert not path.with_name(path.name + ".next").exists()
            live.send(topic, key=b"k", value=b"{}").get(timeout=20)  # open connection, no new login
            time.sleep(4 * IDLE_MS / 1000)  # idle connections closed: the next send logs in again
            live.send(topic, key=b"k", value=b"{}").get(timeout=20)
            time.sleep(4 * IDLE_MS / 1000)
            live.send(topic, key=b"k", value=b"{}").get(timeout=20)
            refusals = "invalid credentials with SASL mechanism SCRAM-SHA-512"
            before = _broker_log_lines(settings, refusals)
            with pytest.raises(KafkaError):  # its re-login with the old password fails
                frozen.send(topic, key=b"k", value=b"{}").get(timeout=20)
            if before is not None:  # the broker says why
                assert _broker_log_lines(settings, refusals) > before
            assert aio.result(timeout=60) == 4
        finally:
            live.close(2)
            with contextlib.suppress(KafkaTimeoutError):  # its record can never be delivered
                frozen.close(1)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / path.name).write_text(old + "\n")
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        _list_topics(settings.with_(secrets_dir=str(stale)), principal)


def test_a_live_secret_never_shows_itself(tmp_path) -> None:
    path = tmp_path / "kafka-x.secret"
    path.write_text("first\n")
    secret = kafka_clients.LiveSecret("first", path)
    path.write_text("second\n")
    assert secret.encode() == b"second" and secret.encode("utf-8") == b"second"
    assert "first" not in repr(secret) and "second" not in repr(secret)
    for copied in (copy.copy(secret), copy.deepcopy(secret), pickle.loads(pickle.dumps(secret))):
        assert isinstance(copied, kafka_clients.LiveSecret) and copied.encode() == b"second"  # configs get copied
    path.unlink()
    assert secret.encode() == b"first"  # the file gone: the secret the client was built with
