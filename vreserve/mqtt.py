"""MQTT clients built one way everywhere: credentials, TLS and connect from a :class:`MqttAddress`.

Every component that talks to the broker (bridge, simulators, tools, tests) builds its paho client
here, so TLS (``mqtts://``, server certificate verified against the configured CA) and the login
are never forgotten by one of them. :func:`control` talks to Mosquitto's dynamic-security plugin.
"""
from __future__ import annotations

import json
import logging
import select
import ssl
import threading
import time
import uuid
from typing import Any, Iterable

import paho.mqtt.client as mqtt

from vreserve.mqtt_access import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC
from vreserve.settings import MqttAddress

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker refused a connection or a control command (the message holds no secret)."""


def new_client(
    addr: MqttAddress,
    client_id: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    **kwargs: Any,
) -> mqtt.Client:
    """A paho client (API v2) logged in as ``username`` (default: the address's account), TLS if asked."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"vr-{uuid.uuid4().hex[:12]}",
                         **kwargs)
    user = username if username is not None else addr.username
    if user:
        client.username_pw_set(user, password if username is not None else addr.password)
    if addr.tls:
        client.tls_set_context(tls_context(addr))
    return client


def tls_context(addr: MqttAddress) -> ssl.SSLContext:
    """Verify the broker's certificate and host name against the configured CA (TLS 1.2 or newer)."""
    if addr.ca_file is None or not addr.ca_file.exists():
        raise BrokerError(
            f"mqtts:// needs the broker's CA certificate; {addr.ca_file} does not exist "
            "(start the local services, or set VR_MQTT_CA_FILE to your CA)"
        )
    ctx = ssl.create_default_context(cafile=str(addr.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(client: mqtt.Client, addr: MqttAddress, keepalive: int = 30) -> None:
    """Open the connection (CONNACK arrives later through the client's loop)."""
    client.connect(addr.host, addr.port, keepalive=keepalive)


def connect_and_wait(client: mqtt.Client, addr: MqttAddress, timeout: float = 10.0) -> mqtt.ReasonCode | None:
    """Connect, start the network thread, and return the CONNACK reason code (None: no answer)."""
    result: dict[str, Any] = {}
    done = threading.Event()
    previous = client.on_connect

    def on_connect(c, userdata, flags, rc, props) -> None:
        result.setdefault("rc", rc)
        done.set()
        if previous is not None:
            previous(c, userdata, flags, rc, props)

    client.on_connect = on_connect
    connect(client, addr)
    client.loop_start()
    done.wait(timeout)
    return result.get("rc")


def end_session(addr: MqttAddress, client_id: str, timeout: float = 10.0) -> None:
    """Delete a client's persistent MQTT session (decommission a bridge or a site for good).

    With a shared subscription, Mosquitto keeps dealing a share of the messages to every member
    session, including persistent sessions of clients that are gone: an instance that will not
    come back must end its session, or its share queues up unseen. Connecting once with the same
    client id and ``clean_session=True`` removes the session (and what it had queued).
    """
    client = new_client(addr, client_id, clean_session=True)
    done = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: done.set()
    connect(client, addr, keepalive=10)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise BrokerError(f"could not connect as {client_id} to end its session")
    finally:
        client.disconnect()
        client.loop_stop()


def read_available(client: mqtt.Client, max_packets: int = 10_000) -> None:
    """Read every MQTT packet the client's socket holds now (external-loop mode, public API only).

    paho's ``loop_read`` reads about one packet per call, and one readable event of a busy
    subscriber's socket carries hundreds: reading until the socket has nothing buffered (TLS
    records already decrypted count) serves them all in one wake-up instead of one per event.
    A lost connection ends the read; paho has then run ``on_disconnect`` and closed the socket.
    """
    for _ in range(max_packets):
        if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            return
        sock = client.socket()
        if sock is None or not _has_buffered(sock):
            return


def _has_buffered(sock) -> bool:
    """Bytes to read now: decrypted TLS data held by the SSL object, or data in the kernel buffer."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def keep_session(client: mqtt.Client, reconnect: bool) -> None:
    """One tick of what paho's own loop does besides reading: keep-alive pings, and a reconnect
    when the connection is gone and ``reconnect`` (not stopping). Call about once a second."""
    if client.socket() is not None:
        client.loop_misc()
    elif reconnect:
        try:
            client.reconnect()
        except OSError as exc:
            log.warning("MQTT reconnect failed: %s", exc)


def control(admin: MqttAddress, commands: Iterable[dict[str, Any]], batch: int = 200,
            timeout: float = 60.0) -> list[dict[str, Any]]:
    """Send dynamic-security commands in batches; returns one response per command, in order.

    The plugin answers each control message with a list of responses (``error`` set on failure);
    the change is in effect when the answer arrives (no reload, no race with connecting clients).
    """
    commands = list(commands)
    if not admin.password:
        raise BrokerError("no password for the broker's admin account (is the local runner's state folder set?)")
    client = new_client(admin, f"vr-admin-{uuid.uuid4().hex[:8]}")
    answers: list[list[dict[str, Any]]] = []
    cond = threading.Condition()
    subscribed = threading.Event()

    def on_message(c, u, msg) -> None:
        with cond:
            answers.append(json.loads(msg.payload).get("responses", []))
            cond.notify_all()

    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set() if not rcs[0].is_failure else None
    try:
        rc = connect_and_wait(client, admin)
        if rc is None or rc.is_failure:
            raise BrokerError(f"admin login to {admin.host}:{admin.port} refused ({rc or 'no answer'})")
        client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(timeout):
            raise BrokerError("the broker refused the control response topic (admin role missing?)")
        out: list[dict[str, Any]] = []
        for start in range(0, len(commands), batch):
            out.extend(_request(client, commands[start:start + batch], answers, cond, timeout))
        return out
    finally:
        client.disconnect()
        client.loop_stop()


def _request(client: mqtt.Client, chunk: list[dict[str, Any]], answers: list, cond: threading.Condition,
             timeout: float) -> list[dict[str, Any]]:
    """One control message and its answer (one message in flight at a time keeps them paired)."""
    with cond:
        expected = len(answers) + 1
    client.publish(CONTROL_TOPIC, json.dumps({"commands": chunk}), qos=1)
    deadline = time.monotonic() + timeout
    with cond:
        while len(answers) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError(f"no answer to {len(chunk)} control command(s) within {timeout:.0f} s")
            cond.wait(left)
        responses = answers[expected - 1]
    if len(responses) != len(chunk):
        raise BrokerError(f"{len(responses)} answers to {len(chunk)} control commands")
    return responses
