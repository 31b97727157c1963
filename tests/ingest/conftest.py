"""Fixtures for the ingest tests: a stored registry with run-unique site ids, Kafka and MQTT helpers."""
from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import read_topic
from vreserve.db import connect as db_connect
from vreserve.mqtt import connect, new_client
from vreserve.registry import Registry
from vreserve.registry_generate import generate_registry
from vreserve.registry_store import store_registry
from vreserve.settings import Settings


@pytest.fixture
def registry(settings: Settings, unique: str) -> Registry:
    """20 sites with ids unique to this test (``t<unique>-00001``...), stored in the test database."""
    reg = generate_registry(20, seed=7, id_prefix=f"t{unique}-")
    with db_connect(settings.pg_dsn) as conn:
        store_registry(conn, reg)
    return reg


@pytest.fixture
def service_client(settings: Settings) -> Iterator[Callable[..., mqtt.Client]]:
    """Factory of connected MQTT clients (service account unless user/password given)."""
    clients: list[mqtt.Client] = []

    def make(user: str | None = None, password: str | None = None) -> mqtt.Client:
        addr = settings.mqtt
        client = new_client(addr, f"vr-test-{uuid.uuid4().hex[:10]}", username=user, password=password)
        state: dict = {}
        client.on_connect = lambda c, u, f, rc, p: state.setdefault("rc", rc)
        connect(client, addr, keepalive=30)
        client.loop_start()
        deadline = time.monotonic() + 10
        while "rc" not in state and time.monotonic() < deadline:
            time.sleep(0.02)
        client.connect_rc = state.get("rc")  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.disconnect()
        c.loop_stop()


@pytest.fixture
def topic_reader() -> Callable[..., list]:
    """``read_topic`` as a fixture (test modules here are not a package, so they cannot import it)."""
    return read_topic
