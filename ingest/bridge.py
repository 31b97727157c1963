"""The MQTT -> Kafka bridge: validate each site message, forward it or dead-letter it, lose nothing.

Delivery guarantee (at least once): the MQTT message is acknowledged (manual PUBACK, paho 2.x
``manual_ack=True``) only from the Kafka delivery callback, i.e. after the broker acknowledged the
record with ``acks=all`` (idempotent producer). The MQTT session is persistent (fixed client id,
``clean_session=False``), so after a crash Mosquitto redelivers every unacknowledged message to the
restarted bridge. Duplicates are possible; later stages de-duplicate by ``(site_id, seq)``.

Threads: paho's network thread runs :meth:`Bridge._on_message` (validate + ``producer.send``),
the Kafka sink's thread (aiokafka on its own asyncio loop, :mod:`ingest.kafka_sink`) runs the
delivery callbacks (ack + counters). Following quix-streams'
MQTT source, an exception in either thread is kept and re-raised in the main loop, which also
prints the status line and refreshes the registry snapshot from the database.
"""
from __future__ import annotations

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

from ingest.validate import KnownRegistry, Rejected, site_from_topic, validate_message
from vreserve import topics
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
    batch_size: int = 256 * 1024
    keepalive_s: int = 30


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
    reasons: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # publish ts -> Kafka ack, this window

    @property
    def in_flight(self) -> int:
        return self.received - self.forwarded - self.dead_lettered


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def end_session(settings: Settings, client_id: str, timeout: float = 10.0) -> None:
    """Delete a bridge's persistent MQTT session (decommission an instance for good).

    With a shared subscription, Mosquitto keeps dealing a share of the messages to every member
    session, including persistent sessions of bridges that are gone: a bridge instance that will
    not come back must end its session, or its share queues up unseen. Connecting once with the
    same client id and ``clean_session=True`` removes the session (and what it had queued).
    """
    import paho.mqtt.client as mqtt

    addr = settings.mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if addr.username:
        client.username_pw_set(addr.username, addr.password)
    done = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: done.set()
    client.connect(addr.host, addr.port, keepalive=10)
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise RuntimeError(f"could not connect as {client_id} to end its session")
    finally:
        client.disconnect()
        client.loop_stop()


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

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        import paho.mqtt.client as mqtt

        from ingest.kafka_sink import KafkaSink

        if not self._fixed_known:
            self.refresh_known()
        self._producer = KafkaSink(self.settings.kafka_bootstrap, linger_ms=self.config.linger_ms,
                                   max_batch_bytes=self.config.batch_size, client_id=f"{self.config.client_id}-producer")
        self._producer.start()
        addr = self.settings.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if addr.username:
            client.username_pw_set(addr.username, addr.password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(0.5, 5)
        self._client = client
        client.connect(addr.host, addr.port, keepalive=self.config.keepalive_s)
        client.loop_start()
        if not self._connected.wait(15):
            self.check()
            raise RuntimeError(f"no MQTT connection to {addr.host}:{addr.port} within 15 s")
        self.check()

    def stop(self, drain_timeout_s: float = 30.0, end_mqtt_session: bool = False) -> None:
        """Flush Kafka (its callbacks send the remaining PUBACKs), then leave MQTT.

        ``end_mqtt_session=True`` also deletes the persistent session (see :func:`end_session`):
        for an instance that is decommissioned, not restarted.
        """
        self._stop.set()
        try:
            if self._producer is not None:
                self._producer.flush(timeout=drain_timeout_s)
                time.sleep(0.2)  # let paho's thread write the last PUBACKs
        finally:
            if self._client is not None:
                self._client.disconnect()
                self._client.loop_stop()
            if self._producer is not None:
                self._producer.close(timeout=10)
        if end_mqtt_session:
            end_session(self.settings, self.config.client_id)

    def check(self) -> None:
        """Re-raise, in the calling (main) thread, an error kept from a callback thread."""
        if self._error is not None:
            raise self._error

    def refresh_known(self) -> None:
        """Reload known sites and material units from the database (a new immutable snapshot)."""
        from ingest.registry import load_known_from_db
        from vreserve.db import connect

        with self._refresh_lock:
            with connect(self.settings.pg_dsn) as conn:
                sites, units = load_known_from_db(conn)
            self.known = KnownRegistry(sites=frozenset(sites), material_units=units)
            self._last_refresh = time.monotonic()

    def run(self, duration_s: float | None = None, on_status: Callable[[str], None] = print,
            status_json: bool = False) -> Counters:
        """Start, print a status line every interval, stop on SIGTERM/SIGINT/duration; re-raise errors."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
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
            self.stop()
        on_status(self.status_line(0.0, status_json, note="stopped"))
        return self.counters

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
        self._connected.set()
        log.info("MQTT connected (session present: %s), subscribed to %s", flags.session_present, share_topic(self.settings))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects, unacked messages are redelivered", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._handle(msg)
        except BaseException as exc:  # never let paho swallow it: the main loop re-raises
            self._error = exc
            self._stop.set()

    def _handle(self, msg) -> None:
        c = self.counters
        c.received += 1
        if msg.dup:
            c.redelivered += 1
        now = datetime.now(timezone.utc)
        payload = bytes(msg.payload)
        try:
            try:
                report = validate_message(msg.topic, payload, self.known, now)
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
                    report = validate_message(msg.topic, payload, self.known, now)
                else:
                    raise
        except Rejected as rej:
            self._dead_letter(msg, payload, rej, now)
            return
        value = ReadingBatch(report=report, received_at=now, mqtt_topic=msg.topic).to_json()
        self._producer.submit(self._readings_topic, report.site_id.encode(), value,
                              partial(self._on_forwarded, msg.mid, msg.qos, report.ts.timestamp(), len(report.readings)))

    def _dead_letter(self, msg, payload: bytes, rej: Rejected, now: datetime) -> None:
        site = rej.site_id or site_from_topic(msg.topic)
        record = DeadLetter(
            source="mqtt", reason=rej.reason, payload=payload, at=now, mqtt_topic=msg.topic,
            context={"kind": rej.kind, "site_id": site, "qos": msg.qos, "mid": msg.mid, "dup": bool(msg.dup)},
        )
        self._producer.submit(self._dead_letter_topic, site.encode() if site else None, record.to_json(),
                              partial(self._on_dead_lettered, msg.mid, msg.qos, rej.kind))

    # -------------------------------------------------------------------- kafka callbacks
    def _on_forwarded(self, mid: int, qos: int, published_at: float, n_readings: int, exc: BaseException | None) -> None:
        if exc is not None:
            return self._on_failed("readings", exc)
        self._client.ack(mid, qos)
        latency = (time.time() - published_at) * 1000.0
        with self._lock:
            self.counters.forwarded += 1
            self.counters.readings_forwarded += n_readings
            if len(self.counters.latencies_ms) < 1_000_000:  # bounded if nobody reads the window
                self.counters.latencies_ms.append(latency)

    def _on_dead_lettered(self, mid: int, qos: int, kind: str, exc: BaseException | None) -> None:
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
