"""The MQTT -> Kafka bridge: validate each site message, forward it or dead-letter it, lose nothing.

Delivery guarantee (at least once): the MQTT message is acknowledged (manual PUBACK, paho 2.x
``manual_ack=True``) only from the Kafka delivery callback, i.e. after the broker acknowledged the
record with ``acks=all`` (idempotent producer). The MQTT session is persistent (fixed client id,
``clean_session=False``), so after a crash Mosquitto redelivers every unacknowledged message to the
restarted bridge. Duplicates are possible; later stages de-duplicate by ``(site_id, seq)``.

Threads: one I/O thread runs an asyncio loop with both clients on it: paho (external-loop mode:
its socket registered with ``add_reader``/``add_writer``; every packet available is read per wake-up
by ``vreserve.mqtt.read_available``, not one per select as paho's own loop does) and aiokafka's
producer (C record builder; kafka-python cost ~300 us of CPU per record on this machine). Received
messages are validated and sent in one task; each record's delivery callback sends the PUBACK. No
cross-thread hand-off per message. The main thread prints the status line, refreshes the registry
snapshot and, following quix-streams' MQTT source, re-raises any exception kept from the I/O thread.
Scale out by running several bridges: they share the subscription (per-site order across bridges is
then not guaranteed; the stream orders by ``seq``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

from ingest.validate import KnownRegistry, Rejected, site_from_topic, validate_message
from vreserve import db_access
from vreserve.db import connect as connect_db
from vreserve.registry_store import load_known_from_db
from vreserve import kafka_clients, topics
from vreserve.decode import safe_text
from vreserve.health import HealthServer, health_status
from vreserve.kafka_access import BRIDGE
from vreserve.mqtt import connect, end_session, keep_session, new_client, read_available
from vreserve.schemas.readings import DeadLetter, ReadingBatch
from vreserve.settings import Settings

log = logging.getLogger("vreserve.ingest.bridge")


@dataclass(frozen=True)
class BridgeConfig:
    #: Stable MQTT client id: the persistent session (and its unacknowledged messages) hangs on it.
    client_id: str
    status_interval_s: float = 5.0
    registry_refresh_s: float = 30.0
    #: An unknown site triggers an early registry reload, at most this often (newly loaded sites).
    unknown_site_refresh_s: float = 2.0
    linger_ms: int = 5
    batch_size: int = 1024 * 1024  # one pending batch per partition in aiokafka: big batches keep up
    keepalive_s: int = 30
    #: Port of the health endpoint (GET /health) while run() runs; None: none.
    health_port: int | None = None


def share_topic(settings: Settings) -> str:
    """The shared subscription: ``vreserve.topics.MQTT_STOCK_SHARED`` for the default prefix.

    Any other topic prefix (tests, benchmarks, a second deployment on the same broker) gets its own
    share group, so bridges of different deployments never split each other's messages.
    """
    if settings.topic_prefix == "vr.":
        return topics.MQTT_STOCK_SHARED
    name = "vr-bridge-" + re.sub(r"[^A-Za-z0-9_-]", "", settings.topic_prefix)
    return topics.MQTT_STOCK_SHARED.replace("$share/vr-bridge/", f"$share/{name}/", 1)


@dataclass
class Counters:
    """received = forwarded + dead_lettered + in_flight at every instant (in_flight drains to 0)."""

    received: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    redelivered: int = 0  # messages Mosquitto sent again (DUP flag): the previous ack was lost
    readings_forwarded: int = 0
    cleared: int = 0  # empty messages (a retained report being cleared): acknowledged, not received
    reasons: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # publish ts -> Kafka ack, this window

    @property
    def in_flight(self) -> int:
        return self.received - self.forwarded - self.dead_lettered


def _future_error(fut) -> BaseException | None:
    if fut.cancelled():
        return asyncio.CancelledError("Kafka send cancelled")
    return fut.exception()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Bridge:
    def __init__(self, settings: Settings, config: BridgeConfig, known: KnownRegistry | None = None):
        self.settings = settings
        self.config = config
        self.counters = Counters()
        self.known = known or KnownRegistry()
        self._fixed_known = known is not None  # tests may pass a snapshot instead of a database
        self._readings_topic = settings.topic(topics.READINGS)
        self._dead_letter_topic = settings.topic(topics.READINGS_DEAD_LETTER)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._producer = None
        self._client = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._misc_task = None
        self._inbox: list = []  # messages read, not yet validated/sent (bounded by Mosquitto's inflight window)
        self._processing = False

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Load the registry, then start the I/O thread (MQTT + Kafka on one asyncio loop)."""
        if not self._fixed_known:
            self.refresh_known()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bridge-io", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(60)
        addr = self.settings.mqtt
        if not self._connected.wait(15):
            self.check()
            raise RuntimeError(f"no MQTT connection and subscription (SUBACK) on {addr.host}:{addr.port} within 15 s")
        self.check()

    async def _astart(self) -> None:
        self._producer = kafka_clients.aio_producer(
            self.settings, BRIDGE,
            enable_idempotence=True,
            linger_ms=self.config.linger_ms,
            max_batch_size=self.config.batch_size,
            client_id=f"{self.config.client_id}-producer",
        )
        await self._producer.start()
        addr = self.settings.mqtt
        client = new_client(
            addr,
            self.config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        loop = self._loop
        client.on_socket_open = lambda c, u, sock: loop.add_reader(sock, self._guard, self._on_readable)
        client.on_socket_close = lambda c, u, sock: loop.remove_reader(sock)
        client.on_socket_register_write = lambda c, u, sock: loop.add_writer(sock, self._guard, c.loop_write)
        client.on_socket_unregister_write = lambda c, u, sock: loop.remove_writer(sock)
        self._client = client
        connect(client, addr, keepalive=self.config.keepalive_s)
        self._misc_task = loop.create_task(self._misc())

    def stop(self, drain_timeout_s: float = 30.0, end_mqtt_session: bool = False) -> None:
        """Forward what was received, wait for Kafka's acks (they send the PUBACKs), leave MQTT.

        ``end_mqtt_session=True`` also deletes the persistent session (``vreserve.mqtt.end_session``):
        for an instance that is decommissioned, not restarted.
        """
        self._stop.set()
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._astop(drain_timeout_s), self._loop).result(drain_timeout_s + 15)
            except Exception as exc:  # leaving anyway: whatever was not acked is redelivered
                log.warning("bridge did not stop cleanly: %r", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if end_mqtt_session:
            end_session(self.settings.mqtt, self.config.client_id)

    async def _astop(self, drain_timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + drain_timeout_s
        while (self._inbox or self._processing) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._producer is not None:
            await asyncio.wait_for(self._producer.flush(), max(1.0, deadline - time.monotonic()))
        await asyncio.sleep(0.05)  # the acks' PUBACKs are written by the loop's writer callback
        if self._misc_task is not None:
            self._misc_task.cancel()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_write()
        if self._producer is not None:
            await self._producer.stop()

    # ------------------------------------------------------------------- the I/O loop thread
    def _guard(self, fn, *args) -> None:
        """Run a loop callback; keep any exception for the main thread (quix-streams' model)."""
        try:
            fn(*args)
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._stop.set()

    def _on_readable(self) -> None:
        """Read every complete MQTT packet available now, then validate and send them in one task."""
        read_available(self._client)
        if self._inbox and not self._processing:
            self._processing = True
            self._loop.create_task(self._process())

    async def _process(self) -> None:
        """Validate and send everything received; each record's ack callback sends the PUBACK."""
        try:
            while self._inbox:
                batch, self._inbox = self._inbox, []
                for i, msg in enumerate(batch, 1):
                    topic, key, value, done = self._prepare(msg)
                    fut = await self._producer.send(topic, value=value, key=key)
                    fut.add_done_callback(done)
                    if i % 100 == 0:
                        await asyncio.sleep(0)  # let the Kafka sender ship full batches meanwhile
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._processing = False

    async def _misc(self) -> None:
        """Keep-alive pings and reconnects (what paho's own loop would do)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                keep_session(self._client, reconnect=not self._stop.is_set())
            except Exception as exc:
                self._fail(exc)
                return

    def check(self) -> None:
        """Re-raise, in the calling (main) thread, an error kept from a callback thread."""
        if self._error is not None:
            raise self._error

    def refresh_known(self) -> None:
        """Reload known sites and material units from the database (a new immutable snapshot)."""

        with self._refresh_lock:
            with connect_db(self.settings.pg_dsn_for(db_access.INGEST)) as conn:
                sites, units = load_known_from_db(conn)
            self.known = KnownRegistry(sites=frozenset(sites), material_units=units)
            self._last_refresh = time.monotonic()

    def run(self, duration_s: float | None = None, on_status: Callable[[str], None] = print,
            status_json: bool = False, end_mqtt_session: bool = False) -> Counters:
        """Start, print a status line every interval, stop on SIGTERM/SIGINT/duration; re-raise errors."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        health = HealthServer(self.config.health_port, self.health) if self.config.health_port else None
        self.start()
        t0 = last_status = last_refresh = time.monotonic()
        last_received = 0
        on_status(self.status_line(0.0, status_json, note="started"))
        try:
            while not self._stop.is_set():
                self._stop.wait(0.2)
                self.check()
                now = time.monotonic()
                if not self._fixed_known and now - last_refresh >= self.config.registry_refresh_s:
                    last_refresh = now
                    try:
                        self.refresh_known()
                    except Exception as exc:  # keep the last snapshot; the database may come back
                        log.warning("registry refresh failed, keeping %d known sites: %s", len(self.known.sites), exc)
                if now - last_status >= self.config.status_interval_s:
                    rate = (self.counters.received - last_received) / (now - last_status)
                    last_received, last_status = self.counters.received, now
                    on_status(self.status_line(rate, status_json))
                if duration_s is not None and now - t0 >= duration_s:
                    break
        finally:
            self.stop(end_mqtt_session=end_mqtt_session)
            if health is not None:
                health.close()
        on_status(self.status_line(0.0, status_json, note="stopped"))
        return self.counters

    def health(self) -> dict:
        """What the health endpoint shows: status, what is failing, the counters."""
        c = self.counters
        failing = []
        if self._error is not None:
            failing.append(f"stopped on error: {safe_text(repr(self._error), 300)}")
        if not self._connected.is_set():
            failing.append("no MQTT connection")
        if self._producer is None:
            failing.append("no Kafka producer")
        return {"status": health_status(failing, started=self._loop is not None), "failing": failing,
                "client_id": self.config.client_id, "received": c.received, "forwarded": c.forwarded,
                "dead_lettered": c.dead_lettered, "in_flight": c.in_flight, "redelivered": c.redelivered,
                "reasons": dict(c.reasons), "known_sites": len(self.known.sites)}

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------------------- status
    def status_line(self, rate: float, as_json: bool = False, note: str = "") -> str:
        c = self.counters
        with self._lock:
            lat, c.latencies_ms = c.latencies_ms, []
        p50, p99 = _pct(lat, 0.50), _pct(lat, 0.99)
        if as_json:
            return json.dumps({
                "at": time.time(), "note": note, "received": c.received, "forwarded": c.forwarded,
                "dead_lettered": c.dead_lettered, "in_flight": c.in_flight, "redelivered": c.redelivered,
                "readings_forwarded": c.readings_forwarded, "rate_msgs_per_s": round(rate, 1),
                "latency_ms_p50": p50, "latency_ms_p99": p99, "latency_samples": len(lat),
                "known_sites": len(self.known.sites), "reasons": dict(c.reasons),
            })
        lat_txt = f"p50 {p50:.0f} ms p99 {p99:.0f} ms" if lat else "no acks"
        reasons = " ".join(f"{k}={v}" for k, v in sorted(c.reasons.items()))
        return (
            f"bridge{' ' + note if note else ''}: received {c.received} msgs ({rate:.0f} msgs/s) forwarded {c.forwarded} "
            f"({c.readings_forwarded} readings) dead-lettered {c.dead_lettered}{' [' + reasons + ']' if reasons else ''} "
            f"in-flight {c.in_flight} redelivered {c.redelivered} | publish->ack {lat_txt} | "
            f"known sites {len(self.known.sites)}"
        )

    # ---------------------------------------------------------------------- paho callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._error = ConnectionError(f"MQTT connection refused: {reason_code}")
            self._stop.set()
            return
        client.subscribe(share_topic(self.settings), qos=1)
        log.info("MQTT connected (session present: %s), subscribing to %s", flags.session_present,
                 share_topic(self.settings))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """Ready only once the broker acknowledged the subscription (SUBACK): a reading published
        before a new bridge's subscription exists has no session to wait in and is dropped."""
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            self._error = ConnectionError(f"MQTT subscription to {share_topic(self.settings)} refused: {failed[0]}")
            self._stop.set()
            return
        self._connected.set()
        log.info("subscribed to %s (granted %s)", share_topic(self.settings), [int(rc.value) for rc in reason_codes])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects, unacked messages are redelivered", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        if not msg.payload:
            # an empty message clears a retained report (the only way to remove one): nothing to
            # store and nothing wrong, so it is acknowledged and counted, never dead-lettered
            client.ack(msg.mid, msg.qos)
            self.counters.cleared += 1
            return
        self.counters.received += 1
        if msg.dup:
            self.counters.redelivered += 1
        self._inbox.append(msg)

    def _prepare(self, msg) -> tuple[str, bytes | None, bytes, Callable]:
        """Validate one message: (Kafka topic, key, value, delivery callback) to forward or dead-letter."""
        now = datetime.now(timezone.utc)
        payload = bytes(msg.payload)
        try:
            try:
                report = validate_message(msg.topic, payload, self.known, now, msg.qos, bool(msg.retain))
            except Rejected as rej:
                # A site loaded after our last snapshot: reload (rate-limited) and try once more.
                if (rej.kind == "unknown_site" and not self._fixed_known
                        and time.monotonic() - self._last_refresh >= self.config.unknown_site_refresh_s):
                    try:
                        self.refresh_known()
                    except Exception as exc:  # database away: judge by the last snapshot
                        log.warning("registry refresh failed: %s", exc)
                        self._last_refresh = time.monotonic()
                        raise rej from None
                    report = validate_message(msg.topic, payload, self.known, now, msg.qos, bool(msg.retain))
                else:
                    raise
        except Rejected as rej:
            return self._dead_letter(msg, payload, now, rej)
        except Exception as exc:  # noqa: BLE001 - validation is pure: whatever it raised, the message caused
            # The last line of defence: a message that breaks the validator is dead-lettered with
            # the error (its bytes kept) and acknowledged, never left to be redelivered forever.
            log.error("validating a message on %s raised %s; dead-lettered", msg.topic, type(exc).__name__)
            rej = Rejected(f"the bridge could not validate this message: {type(exc).__name__}: {safe_text(exc, 300)}",
                           "internal", site_from_topic(msg.topic))
            return self._dead_letter(msg, payload, now, rej)
        value = ReadingBatch(report=report, received_at=now, mqtt_topic=msg.topic).to_json()
        return (self._readings_topic, report.site_id.encode(), value,
                partial(self._on_forwarded, msg.mid, msg.qos, report.ts.timestamp(), len(report.readings)))

    def _dead_letter(self, msg, payload: bytes, now: datetime, rej: Rejected) -> tuple[str, bytes | None, bytes, Callable]:
        site = rej.site_id or site_from_topic(msg.topic)
        record = DeadLetter(
            source="mqtt", reason=rej.reason, payload=payload, at=now, mqtt_topic=msg.topic,
            context={"kind": rej.kind, "site_id": site, "qos": msg.qos, "mid": msg.mid, "dup": bool(msg.dup),
                     "retain": bool(msg.retain)},
        )
        return (self._dead_letter_topic, site.encode() if site else None, record.to_json(),
                partial(self._on_dead_lettered, msg.mid, msg.qos, rej.kind))

    # -------------------------------------------------------------------- kafka callbacks
    def _on_forwarded(self, mid: int, qos: int, published_at: float, n_readings: int, fut) -> None:
        exc = _future_error(fut)
        if exc is not None:
            return self._on_failed("readings", exc)
        self._client.ack(mid, qos)
        latency = (time.time() - published_at) * 1000.0
        with self._lock:
            self.counters.forwarded += 1
            self.counters.readings_forwarded += n_readings
            if len(self.counters.latencies_ms) < 1_000_000:  # bounded if nobody reads the window
                self.counters.latencies_ms.append(latency)

    def _on_dead_lettered(self, mid: int, qos: int, kind: str, fut) -> None:
        exc = _future_error(fut)
        if exc is not None:
            return self._on_failed("dead-letter", exc)
        self._client.ack(mid, qos)
        with self._lock:
            self.counters.dead_lettered += 1
            self.counters.reasons[kind] = self.counters.reasons.get(kind, 0) + 1

    def _on_failed(self, what: str, exc: BaseException) -> None:
        # Not acknowledged: Mosquitto keeps the message and redelivers it to the next session.
        self._error = RuntimeError(f"Kafka did not accept a {what} record: {exc!r}")
        self._stop.set()
