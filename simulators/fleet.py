"""A fleet of simulated storage sites in one process: stock that drifts, readings over MQTT QoS 1.

One thread drives every MQTT connection (paho clients on a ``selectors`` loop, no thread per site)
and a schedule of due readings (a heap). Each site:

* holds stock per contracted material, starting near its contracted quantity; consumables drift
  down (rotation, consumption) and are replenished towards the contracted level; durables barely move;
* publishes ``vr/v1/sites/{site_id}/stock`` (contract v1, QoS 1) every ``interval_s`` +- jitter, with
  ``seq`` starting at the fleet's start time in epoch milliseconds so it keeps increasing across
  fleet restarts;
* honours pick commands on ``vr/v1/sites/{site_id}/commands/pick``: each ``order_id`` at most once,
  never below zero (the shortfall is recorded), the next reading shows the lower stock (and is sent
  right away). A (site, material) that was picked from is no longer replenished, so dispatched stock
  stays gone;
* answers every pick command on ``vr/v1/sites/{site_id}/picked`` (QoS 1) with what it really handed
  over: ``{"v":1,"order_id","material","requested","picked","unit","ts"}`` plus ``reason`` for a
  short or rejected pick. A replayed command (same ``order_id``) gets the ORIGINAL answer again
  (same figures, same ``ts``) and changes nothing, so a restarted carrier still learns the outcome;
* has a retained status topic (``online`` on connect; last will ``offline`` when the connection dies).

Auth modes: ``per-site`` (each site logs in as its own MQTT user, so the broker's ACL confines it to
its own topics) and ``gateway`` (a few connections with the service account publish for many sites,
like a warehouse IoT gateway; used by the 10k-site benchmark, where 10k connections would measure
the fleet rather than the bridge). The bridge checks payload site == topic site in both modes.

Fault injection (:class:`Faults`), each a probability per reading: duplicates, out-of-order, malformed
payloads, dropped connection (then reconnect), stuck sensor (a pick does not cure it: the frozen
reading then hides the pick), spike; and per pick command, phantom picks (answered as handed over,
goods kept). :meth:`Fleet.move_stock` moves goods outside any pick (an owner's replenishment or
consumption, or a theft), for supervision's tests.
"""
from __future__ import annotations

import heapq
import json
import logging
import math
import random
import selectors
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

from vreserve.decode import decode_json
from vreserve.mqtt import connect, end_session, new_client
from vreserve.schemas.common import SchemaError, dumps, format_ts
from vreserve.schemas.site_commands import PickAnswer, PickCommand, SiteStatus
from vreserve.settings import Settings
from vreserve.site_credentials import provision_site_credentials
from vreserve.topics import mqtt_pick_topic, mqtt_picked_topic, mqtt_status_topic, mqtt_stock_topic

log = logging.getLogger("vreserve.simulators.fleet")

#: Units counted in whole pieces; everything else (kg, litre) is reported to 0.1.
_DISCRETE_UNITS = {"box", "unit", "piece", "pair", "kit", "carton"}


@dataclass(frozen=True)
class Faults:
    """Fault probabilities per reading (0 = off)."""

    duplicates: float = 0.0  # the same message (same seq) is published twice
    out_of_order: float = 0.0  # a message is held back and published after the site's next one
    malformed: float = 0.0  # an extra junk payload is published on the site's stock topic
    disconnect: float = 0.0  # the site's connection drops abruptly (last will fires), then reconnects
    stuck: float = 0.0  # the sensor freezes: the next ``stuck_readings`` readings repeat the same numbers
    spike: float = 0.0  # one quantity is reported 10x once (the stock itself is unchanged)
    #: Fraud, per pick command: the site answers the pick as handed over in full but keeps the
    #: goods (its sensor still shows them). Not part of ``all``.
    phantom_picks: float = 0.0
    stuck_readings: int = 10
    reconnect_after_s: float = 1.0

    @classmethod
    def parse(cls, text: str | None) -> "Faults":
        """``none``, ``all`` (1 % each, 0.1 % disconnects) or ``duplicates=0.01,spike=0.002,...``."""
        if not text or text == "none":
            return cls()
        if text == "all":
            return cls(duplicates=0.01, out_of_order=0.01, malformed=0.01, disconnect=0.001, stuck=0.01, spike=0.01)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, float] = {}
        for part in text.split(","):
            name, _, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(known)}")
            try:
                value = float(raw) if raw else 0.01
            except ValueError:
                raise ValueError(f"fault {name}: {raw!r} is not a number") from None
            if name == "stuck_readings":
                values[name] = int(value)
            else:
                if not 0 <= value <= 1 and name != "reconnect_after_s":
                    raise ValueError(f"fault {name}: probability must be within 0..1")
                values[name] = value
        return cls(**values)


@dataclass
class PickOutcome:
    order_id: str
    site_id: str
    material: str
    requested: float
    applied: float
    shortfall: float
    status: str  # applied, duplicate, rejected
    reason: str = ""
    at: float = field(default_factory=time.time)
    unit: str = ""

    def answer(self) -> dict:
        """The site's answer on ``vr/v1/sites/{site_id}/picked`` (contract v1: :class:`PickAnswer`).

        An answer to a command too broken to name a unit (or with an over-long id / material) is
        outside the contract; it is still sent, hand-built without the model, so the sender learns why."""
        at = datetime.fromtimestamp(self.at, timezone.utc)
        try:
            return _present(PickAnswer(self.order_id, self.material, float(self.requested), float(self.applied),
                                       self.unit, at, self.reason or None).to_payload())
        except (SchemaError, ValueError, TypeError):
            body = {"v": 1, "order_id": self.order_id, "material": self.material, "requested": self.requested,
                    "picked": self.applied, "unit": self.unit, "ts": format_ts(at)}
            if self.reason:
                body["reason"] = self.reason
            return body


@dataclass
class FleetCounters:
    messages_sent: int = 0  # stock messages published (incl. duplicates, excl. malformed)
    readings_sent: int = 0  # material readings inside them
    acked: int = 0  # PUBACKs received from the broker
    duplicates_sent: int = 0
    out_of_order_sent: int = 0
    malformed_sent: int = 0
    spikes_sent: int = 0
    stuck_started: int = 0
    disconnects: int = 0
    reconnects: int = 0
    picks_applied: int = 0
    picks_duplicate: int = 0
    picks_rejected: int = 0
    phantom_picks: int = 0  # picks answered as handed over while the goods stayed
    answers_sent: int = 0  # pick answers published on .../picked (replays re-answer)
    shortfall_qty: float = 0.0  # sum over picks of requested - applied (in each material's unit)


class _SiteState:
    __slots__ = ("site_id", "materials", "units", "qty", "contracted", "consumable", "seq", "orders",
                 "stuck_left", "stuck_values", "held", "conn", "no_replenish", "due")

    def __init__(self, site_id, materials, units, qty, contracted, consumable, seq, conn):
        self.site_id = site_id
        self.materials = materials
        self.units = units
        self.qty = qty
        self.contracted = contracted
        self.consumable = consumable
        self.seq = seq
        #: order id -> the outcome of its first pick command (replays get the same answer)
        self.orders: dict[str, PickOutcome] = {}
        self.stuck_left = 0
        self.stuck_values: list[float] | None = None
        self.held: bytes | None = None
        self.conn = conn
        self.no_replenish: set[int] = set()
        self.due = 0.0


class _Conn:
    """One MQTT connection: a site (per-site mode) or a gateway for many sites."""

    def __init__(self, client, name: str, sites: list[str]):
        self.client = client
        self.name = name
        self.sites = sites
        self.connected = False
        self.reconnect_at: float | None = None
        self.sock = None


class Fleet:
    """Simulated sites publishing stock readings; ``start()``/``stop()`` or ``run()`` in the foreground."""

    def __init__(
        self,
        settings: Settings,
        registry,
        interval_s: float = 10.0,
        *,
        faults: Faults = Faults(),
        jitter: float = 0.1,
        auth: str = "per-site",
        credentials: dict[str, str] | None = None,
        gateways: int = 4,
        site_ids: list[str] | None = None,
        seed: int = 0,
        replenish: bool = True,
        report_on_pick: bool = True,
        on_pick: Callable[[PickOutcome], None] | None = None,
        client_prefix: str | None = None,
    ):
        if auth not in ("per-site", "gateway"):
            raise ValueError("auth must be 'per-site' or 'gateway'")
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.settings = settings
        self.registry = registry
        self.interval_s = interval_s
        self.faults = faults
        self.jitter = jitter
        self.auth = auth
        self.credentials = credentials
        self.gateways = max(1, gateways)
        self.replenish = replenish
        self.report_on_pick = report_on_pick
        self.on_pick = on_pick
        self.counters = FleetCounters()
        self.pick_log: list[PickOutcome] = []
        self._rng = random.Random(seed)
        self._client_prefix = client_prefix or f"vr-fleet-{uuid.uuid4().hex[:6]}"
        ids = site_ids if site_ids is not None else list(registry.sites)
        unknown = [s for s in ids if s not in registry.sites]
        if unknown:
            raise ValueError(f"sites not in the registry: {', '.join(unknown[:5])}")
        self.site_ids = ids
        self._sites: dict[str, _SiteState] = {}
        self._conns: list[_Conn] = []
        self._sel = selectors.DefaultSelector()
        self._heap: list[tuple[float, int, str]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._provisioned = False
        self._tick = 0

    # --------------------------------------------------------------------------- public API
    def start(self) -> None:
        """Connect every site (or gateway) and start the publishing thread."""
        self._build_state()
        self._connect_all()
        self._thread = threading.Thread(target=self._loop_guarded, name="fleet", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0, end_sessions: bool = False) -> None:
        """Stop publishing, send ``offline`` for every site, wait for outstanding PUBACKs, disconnect.

        ``end_sessions=True`` (per-site mode) also deletes the sites' persistent MQTT sessions, for
        throw-away fleets (tests) whose site ids never come back.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for conn in self._conns:
            if conn.connected:
                for site_id in conn.sites:
                    conn.client.publish(mqtt_status_topic(site_id), _status_payload(site_id, "offline", "stopped"),
                                        qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [c for c in self._conns if c.connected and getattr(c.client, "_out_messages", None)]
            if not pending:
                break
            for conn in pending:
                conn.client.loop(timeout=0.01)
        for conn in self._conns:
            try:
                conn.client.disconnect()
                conn.client.loop(timeout=0.01)
            except Exception:  # already gone
                pass
        try:
            self._sel.close()
        except Exception:
            pass
        if end_sessions and self.auth == "per-site":
            for conn in self._conns:
                try:
                    end_session(self.settings.mqtt, conn.name, timeout=5)
                except Exception as exc:  # best effort: a leftover site session only holds its picks
                    log.warning("could not end the session of %s: %s", conn.name, exc)

    def run(self, duration_s: float | None = None, progress: Callable[[str], None] | None = None,
            progress_every_s: float = 5.0, end_sessions: bool = False) -> FleetCounters:
        """Foreground: start, report progress, stop after ``duration_s`` (or until :meth:`request_stop`).

        An error of the publishing thread is re-raised here (after the fleet stopped), never
        swallowed by the stop it triggered.
        """
        self.start()
        t0 = last = time.monotonic()
        last_sent = 0
        try:
            while not self._stop.wait(0.2):
                self.check()
                now = time.monotonic()
                if progress and now - last >= progress_every_s:
                    rate = (self.counters.messages_sent - last_sent) / (now - last)
                    last_sent, last = self.counters.messages_sent, now
                    progress(self.status_line(rate))
                if duration_s is not None and now - t0 >= duration_s:
                    break
            self.check()
        finally:
            self.stop(end_sessions=end_sessions)
        if progress:
            progress(self.status_line(None, note="stopped"))
        return self.counters

    def request_stop(self) -> None:
        self._stop.set()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def connected(self) -> int:
        return sum(1 for c in self._conns if c.connected)

    def wait_connected(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if self._conns and all(c.connected for c in self._conns):
                return True
            time.sleep(0.05)
        return False

    def stock(self, site_id: str) -> dict[str, float]:
        """Current simulated stock of one site (material -> qty in its unit)."""
        with self._lock:
            s = self._sites[site_id]
            return dict(zip(s.materials, s.qty))

    def seq_range(self, site_id: str) -> range:
        """The seqs this fleet published for a site so far (each once, unless faults duplicate)."""
        st = self._sites[site_id]
        return range(self._seq0 + 1, st.seq + 1)

    def apply_pick(self, site_id: str, order_id: str, material: str, qty: float, unit: str | None = None) -> PickOutcome:
        """Apply a pick order directly (the MQTT command path calls this too)."""
        with self._lock:
            return self._apply_pick(site_id, order_id, material, qty, unit)

    def move_stock(self, site_id: str, material: str, delta: float) -> datetime:
        """Goods move outside any pick (replenishment +, consumption or theft -); the next reading,
        sent at once, shows it. Returns when it happened, on the clock and to the millisecond of the
        readings (taken under the publishing lock, so no reading between that time and the move
        misses it). Whether anybody declares the movement is the caller's business."""
        with self._lock:
            at = datetime.fromtimestamp(math.floor(time.time() * 1000) / 1000, timezone.utc)
            st = self._sites[site_id]
            i = st.materials.index(material)
            st.qty[i] = max(0.0, st.qty[i] + delta)
            st.no_replenish.add(i)  # the owner manages this material by hand from now on
            st.due = time.monotonic()
            heapq.heappush(self._heap, (st.due, -1, site_id))
            return at

    def status_line(self, rate: float | None, note: str = "") -> str:
        c = self.counters
        rate_txt = f" ({rate:.0f} msgs/s)" if rate is not None else ""
        return (
            f"fleet{' ' + note if note else ''}: {len(self._sites)} sites, {self.connected()}/{len(self._conns)} connections up | "
            f"sent {c.messages_sent} msgs{rate_txt}, {c.readings_sent} readings, acked {c.acked} | faults: "
            f"dup {c.duplicates_sent} out-of-order {c.out_of_order_sent} malformed {c.malformed_sent} "
            f"spike {c.spikes_sent} stuck {c.stuck_started} disconnects {c.disconnects} | picks applied "
            f"{c.picks_applied} replayed {c.picks_duplicate} rejected {c.picks_rejected} answered {c.answers_sent} shortfall {c.shortfall_qty:g} units"
        )

    # ------------------------------------------------------------------------------ set-up
    def _build_state(self) -> None:
        seq0 = self._seq0 = int(time.time() * 1000)
        now = time.monotonic()
        reg = self.registry
        for i, site_id in enumerate(self.site_ids):
            site = reg.sites[site_id]
            mats = list(site.materials)
            contracted = [float(site.materials[m].contracted_qty) for m in mats]
            st = _SiteState(
                site_id=site_id,
                materials=mats,
                units=[reg.materials[m].unit for m in mats],
                qty=[c * self._rng.uniform(0.95, 1.1) for c in contracted],
                contracted=contracted,
                consumable=[reg.materials[m].consumable for m in mats],
                seq=seq0,
                conn=0 if self.auth == "per-site" else i % self.gateways,
            )
            # Spread the first readings over one interval so the load is even.
            st.due = now + self._rng.uniform(0, self.interval_s)
            self._sites[site_id] = st
            heapq.heappush(self._heap, (st.due, i, site_id))

    def _connect_all(self) -> None:
        addr = self.settings.mqtt
        if self.auth == "per-site":
            if self.credentials is None:
                self.credentials = provision_site_credentials(self.settings, self.site_ids)
                self._provisioned = True
            groups = [(site_id, [site_id]) for site_id in self.site_ids]
        else:
            n = min(self.gateways, len(self.site_ids))
            groups = [(f"{self._client_prefix}-gw{g}", [s for i, s in enumerate(self.site_ids) if i % n == g]) for g in range(n)]
        for index, (name, sites) in enumerate(groups):
            per_site = self.auth == "per-site"
            client = new_client(
                addr,
                name,
                username=name if per_site else None,
                password=self.credentials.get(name, "") if per_site else None,
                # A site's session survives a dropped connection, so pick commands sent meanwhile arrive.
                clean_session=not per_site,
                protocol=mqtt.MQTTv311,
            )
            if per_site:
                client.will_set(mqtt_status_topic(name), _status_payload(name, "offline", "connection lost"), qos=1, retain=True)
            client.max_inflight_messages_set(0)  # no client-side cap: a reading never waits behind status messages
            client.max_queued_messages_set(0)
            conn = _Conn(client, name, sites)
            client.user_data_set(conn)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            client.on_publish = self._on_publish
            client.on_socket_open = self._on_socket_open
            client.on_socket_close = self._on_socket_close
            self._conns.append(conn)
            if per_site:
                self._sites[name].conn = index
            connect(client, addr, keepalive=30)

    # ------------------------------------------------------------------------ paho callbacks
    def _on_socket_open(self, client, conn: _Conn, sock) -> None:
        conn.sock = sock
        self._sel.register(sock, selectors.EVENT_READ, conn)

    def _on_socket_close(self, client, conn: _Conn, sock) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        conn.sock = None

    def _on_connect(self, client, conn: _Conn, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if conn.reconnect_at is not None:
                # a RE-connect refused (broker restarting, password file being rewritten): one site
                # is offline for a while, the fleet goes on and tries again
                log.warning("MQTT reconnect of %s refused (%s); retrying in 5 s", conn.name, reason_code)
                conn.reconnect_at = time.monotonic() + 5.0
                return
            self._error = ConnectionError(f"MQTT connection of {conn.name} refused: {reason_code}")
            self._stop.set()
            return
        if conn.reconnect_at is not None or conn.connected:
            self.counters.reconnects += 1
        conn.connected = True
        conn.reconnect_at = None
        if self.auth == "per-site":
            client.subscribe(mqtt_pick_topic(conn.name), qos=1)
        else:
            client.subscribe(mqtt_pick_topic("+"), qos=1)
        for site_id in conn.sites:
            client.publish(mqtt_status_topic(site_id), _status_payload(site_id, "online"), qos=1, retain=True)

    def _on_disconnect(self, client, conn: _Conn, flags, reason_code, properties) -> None:
        conn.connected = False
        if not self._stop.is_set():
            conn.reconnect_at = time.monotonic() + self.faults.reconnect_after_s

    def _on_publish(self, client, conn, mid, reason_code, properties) -> None:
        self.counters.acked += 1

    def _on_message(self, client, conn: _Conn, msg) -> None:
        site_id = msg.topic.split("/")[3] if msg.topic.count("/") >= 5 else ""
        cmd = None
        if site_id not in self._sites or (self.auth == "gateway" and site_id not in conn.sites):
            return  # another fleet's (or gateway's) site
        try:
            cmd = decode_json(msg.payload, "pick command", 64 * 1024)  # bounded; a SchemaError is a ValueError
            if not isinstance(cmd, dict) or cmd.get("v") != 1:
                raise ValueError("pick command must be a JSON object with v=1")
            command = PickCommand.from_payload(cmd)  # the contract's types and lengths (SchemaError)
            if command.qty <= 0:
                raise ValueError(f"qty must be a positive number, got {cmd.get('qty')!r}")
        except (ValueError, TypeError) as exc:
            oid = cmd.get("order_id") if isinstance(cmd, dict) else None
            mat = cmd.get("material") if isinstance(cmd, dict) else None
            outcome = PickOutcome(oid if isinstance(oid, str) and oid else "?", site_id,
                                  mat if isinstance(mat, str) else "?", 0.0, 0.0, 0.0, "rejected",
                                  f"malformed pick command: {exc}")
            self.counters.picks_rejected += 1
            self._record(outcome)
            if outcome.order_id != "?":  # an order the carrier can recognise gets its answer
                self._answer(site_id, outcome)
            return
        with self._lock:
            self._apply_pick(site_id, command.order_id, command.material, command.qty, command.unit)

    # ------------------------------------------------------------------------------- picks
    def _apply_pick(self, site_id: str, order_id: str, material: str, qty: float, unit: str | None) -> PickOutcome:
        """Apply one pick command once and answer it; a replay re-sends the first answer, changes nothing."""
        outcome = self._pick_once(site_id, order_id, material, qty, unit)
        self._answer(site_id, outcome if outcome.status != "duplicate" else self._sites[site_id].orders[order_id])
        return outcome

    def _pick_once(self, site_id: str, order_id: str, material: str, qty: float, unit: str | None) -> PickOutcome:
        st = self._sites[site_id]
        if order_id in st.orders:
            self.counters.picks_duplicate += 1
            first = st.orders[order_id]
            return self._record(PickOutcome(order_id, site_id, material, qty, 0.0, 0.0, "duplicate",
                                            "order already applied", unit=first.unit))
        if material not in st.materials:
            self.counters.picks_rejected += 1
            out = st.orders[order_id] = PickOutcome(order_id, site_id, material, qty, 0.0, qty, "rejected",
                                                    f"site holds no {material}", unit=unit or "")
            return self._record(out)
        i = st.materials.index(material)
        if unit is not None and unit != st.units[i]:
            self.counters.picks_rejected += 1
            out = st.orders[order_id] = PickOutcome(order_id, site_id, material, qty, 0.0, qty, "rejected",
                                                    f"unit {unit!r} but {material} is counted in {st.units[i]!r}",
                                                    unit=unit)
            return self._record(out)
        available = _report_value(st.qty[i], st.units[i])
        applied = min(qty, available)
        if self.faults.phantom_picks and self._rng.random() < self.faults.phantom_picks:
            self.counters.phantom_picks += 1  # answered as handed over; the goods stay on the shelf
        else:
            # Taking everything the sensor shows empties the shelf (no invisible fractional remainder).
            st.qty[i] = 0.0 if applied >= available else max(0.0, st.qty[i] - applied)
        st.no_replenish.add(i)
        # (A stuck sensor stays stuck: the goods left, its frozen reading does not show it.)
        shortfall = qty - applied
        self.counters.picks_applied += 1
        self.counters.shortfall_qty += shortfall
        if self.report_on_pick:
            st.due = time.monotonic()
            heapq.heappush(self._heap, (st.due, -1, site_id))
        reason = ""
        if shortfall > 0:
            reason = (f"short pick: the site held {applied:g} of the {qty:g} {st.units[i]} ordered"
                      if applied > 0 else f"the site holds no {material} (0 of {qty:g} {st.units[i]})")
        out = st.orders[order_id] = PickOutcome(order_id, site_id, material, qty, applied, shortfall, "applied",
                                                reason, unit=st.units[i])
        return self._record(out)

    def _answer(self, site_id: str, outcome: PickOutcome) -> None:
        """Publish the site's answer to a pick command (QoS 1); no network (state-only fleet): nothing."""
        st = self._sites.get(site_id)
        if st is None or not self._conns:
            return
        conn = self._conns[st.conn]
        payload = dumps(outcome.answer())
        conn.client.publish(mqtt_picked_topic(site_id), payload, qos=1)
        self.counters.answers_sent += 1

    def _record(self, outcome: PickOutcome) -> PickOutcome:
        if len(self.pick_log) < 100_000:
            self.pick_log.append(outcome)
        if outcome.status != "applied" or outcome.shortfall > 0:
            log.info("pick %s at %s: %s %s", outcome.order_id, outcome.site_id, outcome.status, outcome.reason)
        if self.on_pick is not None:
            self.on_pick(outcome)
        return outcome

    # -------------------------------------------------------------------------------- loop
    def _loop_guarded(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # kept and re-raised by check() in the caller's thread
            self._error = exc
            self._stop.set()

    def _loop(self) -> None:
        last_misc = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.05
            if self._heap:
                timeout = max(0.0, min(timeout, self._heap[0][0] - now))
            if self._sel.get_map():
                events = self._sel.select(timeout)
            else:
                time.sleep(timeout)
                events = []
            for key, _mask in events:
                conn: _Conn = key.data
                conn.client.loop_read()
                # TLS: one record can hold more packets than a read takes; the socket then stays
                # quiet while they wait decrypted in the SSL buffer, so drain what is pending.
                for _ in range(1000):
                    pending = getattr(conn.sock, "pending", None)
                    if conn.sock is None or pending is None or not pending():
                        break
                    conn.client.loop_read()
            now = time.monotonic()
            with self._lock:
                self._publish_due(now)
            for conn in self._conns:
                if conn.sock is not None and conn.client.want_write():
                    conn.client.loop_write()
            if now - last_misc >= 1.0:
                last_misc = now
                for conn in self._conns:
                    if conn.sock is not None:
                        conn.client.loop_misc()
                    elif conn.reconnect_at is not None and now >= conn.reconnect_at:
                        try:
                            conn.client.reconnect()
                        except OSError as exc:
                            log.warning("reconnect of %s failed: %s", conn.name, exc)
                            conn.reconnect_at = now + 2.0

    def _publish_due(self, now: float) -> None:
        heap = self._heap
        budget = 5000  # bound the time between network reads
        while heap and heap[0][0] <= now and budget > 0:
            due, order, site_id = heapq.heappop(heap)
            st = self._sites[site_id]
            if due != st.due:
                continue  # superseded (a pick moved the reading forward)
            budget -= 1
            self._publish_site(st, now)
            step = self.interval_s * (1 + self._rng.uniform(-self.jitter, self.jitter))
            nxt = due + step if due + step > now - self.interval_s else now + step  # no catch-up bursts
            st.due = nxt
            heapq.heappush(heap, (nxt, order if order >= 0 else 0, site_id))

    def _publish_site(self, st: _SiteState, now: float) -> None:
        rng = self._rng
        faults = self.faults
        conn = self._conns[st.conn]
        client = conn.client
        self._drift(st)
        st.seq += 1
        values = [_report_value(q, u) for q, u in zip(st.qty, st.units)]
        if st.stuck_left > 0:
            st.stuck_left -= 1
            values = st.stuck_values or values
        elif faults.stuck and rng.random() < faults.stuck:
            st.stuck_left = faults.stuck_readings
            st.stuck_values = values
            self.counters.stuck_started += 1
        if faults.spike and rng.random() < faults.spike and values:
            j = rng.randrange(len(values))
            values = list(values)
            values[j] = values[j] * 10 if values[j] else 100.0
            self.counters.spikes_sent += 1
        payload = json.dumps(
            {
                "v": 1,
                "site_id": st.site_id,
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "seq": st.seq,
                "readings": [{"material": m, "qty": q, "unit": u} for m, q, u in zip(st.materials, values, st.units)],
            },
            separators=(",", ":"),
        ).encode()
        topic = mqtt_stock_topic(st.site_id)
        if st.held is not None:
            # out-of-order: this (newer) message goes first, the held older one right after it.
            self._send(client, topic, payload, len(values))
            self._send(client, topic, st.held, len(values))
            st.held = None
            self.counters.out_of_order_sent += 1
        elif faults.out_of_order and rng.random() < faults.out_of_order:
            st.held = payload
        else:
            self._send(client, topic, payload, len(values))
        if faults.duplicates and rng.random() < faults.duplicates:
            self._send(client, topic, payload, len(values))
            self.counters.duplicates_sent += 1
        if faults.malformed and rng.random() < faults.malformed:
            client.publish(topic, _junk(rng, st.site_id), qos=1)
            self.counters.malformed_sent += 1
        if faults.disconnect and rng.random() < faults.disconnect and conn.sock is not None:
            self.counters.disconnects += 1
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # abrupt: the broker publishes the last will
            except OSError:
                pass

    def _send(self, client, topic: str, payload: bytes, n_readings: int) -> None:
        client.publish(topic, payload, qos=1)
        self.counters.messages_sent += 1
        self.counters.readings_sent += n_readings

    def _drift(self, st: _SiteState) -> None:
        rng = self._rng
        frac = self.interval_s / 10.0  # drift rates are per 10 s reading
        for i, c in enumerate(st.contracted):
            q = st.qty[i]
            if st.consumable[i]:
                q -= c * rng.uniform(0, 0.002) * frac
                if self.replenish and i not in st.no_replenish and q < 0.97 * c:
                    q += c * rng.uniform(0, 0.008) * frac
            elif rng.random() < 0.01 * frac:
                q += rng.choice((-1.0, 1.0))
            q = max(q, 0.0)
            st.qty[i] = q if i in st.no_replenish else min(q, 1.1 * c)


def _report_value(q: float, unit: str) -> float:
    if unit in _DISCRETE_UNITS:
        return float(math.floor(q + 1e-9))
    return math.floor(q * 10 + 1e-9) / 10


def _present(payload: dict) -> dict:
    """A record's payload without its unset optional fields (``reason``, ``ts``): absent, as the
    contract lists them (``"reason"?``), rather than ``null``."""
    return {k: v for k, v in payload.items() if v is not None}


def _status_payload(site_id: str, status: str, reason: str = "") -> bytes:
    """The site's retained status (:class:`SiteStatus`); ``ts`` only when going online: an offline
    status is also the last will, set at connect time, when the moment of loss is not known yet."""
    ts = datetime.now(timezone.utc) if status == "online" else None
    return dumps(_present(SiteStatus(site_id, status, ts, reason or None).to_payload()))


def _junk(rng: random.Random, site_id: str) -> bytes:
    """One of several kinds of broken payloads a faulty sensor might send."""
    kind = rng.randrange(4)
    if kind == 0:
        return b'{"v":1,"site_id":"' + site_id.encode() + b'","ts":"2026-'  # truncated JSON
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(48))  # binary junk
    if kind == 2:
        return json.dumps({"v": 1, "site_id": site_id, "ts": "now", "seq": "x", "readings": "none"}).encode()
    return json.dumps({"v": 1, "site_id": site_id, "ts": datetime.now(timezone.utc).isoformat(), "seq": 1,
                       "readings": [{"material": "medicine", "qty": -5, "unit": "box"}]}).encode()
