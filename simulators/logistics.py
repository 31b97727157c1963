"""A simulated logistics system: takes dispatch orders, drives them, reports their status.

It behaves like a real carrier integrated through one of the two documented contracts:

* Kafka (docs/dispatcher.md; simulators/logistics_kafka.py): consumes the dispatch-orders topic
  (orders and cancel records) and publishes statuses to the order-status topic, keyed by order id;
* webhooks (docs/api.md; simulators/logistics_webhook.py): runs an HTTP receiver that
  `vreserve carrier-webhooks run` POSTs each order, supersede and cancel to (signature and replay
  window checked, the order id as idempotency key), and posts statuses back through the HTTP API
  with its carrier token (``POST /api/v1/orders/{id}/status``);
* per order, after realistic (jittered, deterministic per order id) delays, reports the statuses
  ``accepted`` -> ``in_transit`` (goods picked at the origin) -> ``delivered`` (with the
  delivered quantity); a configurable share of orders ``failed`` with a reason instead (no
  vehicle: nothing was picked);
* a supply-leg order is picked at a site, and nothing is assumed about what the site had: at pick
  time the carrier sends the site a pick command over MQTT (``vr/v1/sites/{site_id}/commands/pick``)
  and waits for the site's answer on ``vr/v1/sites/{site_id}/picked`` (what it really handed over).
  Only a pick of more than zero units makes the order ``in_transit`` (``qty`` = picked) and then
  ``delivered`` with the picked quantity (a short pick is a short delivery, with the reason); zero
  picked is ``failed`` with the site's reason; no answer within ``pick_timeout_s`` is ``failed``
  ("site did not confirm the pick within N s"). The site's stock falls, so its next reading - and
  the next plan - sees it;
* a delivery-leg order (distribution centre -> rescue centre) is not picked at a simulated site:
  the dispatcher plans it from the centre stock it computes from supply legs (delivered
  quantities, or picked ones for legs on the road; nothing for legs not yet picked), so it is
  delivered in full (goods lost on the road would be the gap; this simulator loses none);
* a cancel record for an order not yet picked drops it and answers ``cancelled``; one for an
  order already on the road is ignored (the goods are moving; the true status follows);
* status ids are deterministic (order id + status), so a restarted simulator that replays the
  topic repeats statuses the dispatcher de-duplicates; an order id seen before is not driven twice;
* (Kafka) offsets are committed only up to the oldest order still under way, so a crash never
  loses one; (webhooks) the sender keeps each delivery until the receiver answered 2xx.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from simulators.logistics_kafka import KafkaOrderSource, KafkaStatusSink, Received, make_producer
from simulators.logistics_webhook import ApiStatusSink, WebhookConfig, WebhookOrderSource
from vreserve import topics
from vreserve.kafka_access import LOGISTICS
from vreserve.mqtt import connect, new_client
from vreserve.schemas import site_commands
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus
from vreserve.settings import Settings

log = logging.getLogger("vreserve.logistics")


@dataclass(frozen=True)
class Timing:
    """Delays in seconds from receiving an order (each jittered by up to +/- ``jitter`` x itself)."""

    accept_s: float = 0.5
    pick_s: float = 1.5
    deliver_s: float = 3.0
    jitter: float = 0.3
    fail_rate: float = 0.0
    #: a supply-leg pick not confirmed by the site within this many seconds fails
    pick_timeout_s: float = 10.0


def _unit_hash(order_id: str, salt: str) -> float:
    """A number in [0, 1) fixed by the order id: the same order always gets the same fate."""
    return int(hashlib.sha256(f"{salt}:{order_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)


def schedule(order_id: str, timing: Timing) -> tuple[float, float, float, bool]:
    """(accept, pick, deliver) offsets in seconds and whether the order fails, for one order."""
    def j(x: float, salt: str) -> float:
        return x * (1 + timing.jitter * (2 * _unit_hash(order_id, salt) - 1))

    a = j(timing.accept_s, "a")
    p = a + j(max(timing.pick_s - timing.accept_s, 0.0), "p")
    d = p + j(max(timing.deliver_s - timing.pick_s, 0.0), "d")
    return a, p, d, _unit_hash(order_id, "fail") < timing.fail_rate


@dataclass
class Counters:
    orders: int = 0
    duplicates: int = 0
    accepted: int = 0
    in_transit: int = 0
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    cancel_ignored: int = 0
    picks_sent: int = 0
    short_picks: int = 0
    pick_timeouts: int = 0
    late_answers: int = 0  # site answers for orders already failed by the timeout (logged)
    rejected: int = 0


@dataclass
class _Job:
    order: DispatchOrder
    ref: tuple[int, int] | str | None  # where the source read it (partition, offset); a webhook's: the order id
    stage: str = "new"  # new -> accepted -> (picking ->) in_transit -> done
    fails: bool = False
    deliver_after_s: float = 0.0  # from the pick (confirmed) to the delivery
    picked: float | None = None  # what the site handed over (supply legs)
    short_reason: str | None = None


@dataclass(frozen=True)
class PickAnswer:
    """A site's answer to a pick command (``vr/v1/sites/{site_id}/picked``)."""

    site_id: str
    order_id: str
    material: str
    requested: float
    picked: float
    unit: str
    at: object  # datetime
    reason: str | None

    @classmethod
    def from_mqtt(cls, topic: str, payload: bytes) -> "PickAnswer":
        """The answer on ``topic`` through the contract (:class:`vreserve.schemas.site_commands.PickAnswer`,
        the safe decoder): a SchemaError for anything else."""
        parts = topic.split("/")
        if len(parts) != 5 or parts[:3] != ["vr", "v1", "sites"] or parts[4] != "picked":
            raise SchemaError(f"not a pick answer topic: {topic}")
        ans = site_commands.PickAnswer.from_json(payload)
        return cls(parts[3], ans.order_id, ans.material, ans.requested, ans.picked, ans.unit, ans.ts,
                   ans.reason or None)


@dataclass
class LogisticsSimulator:
    """The carrier: takes dispatch records from a source (the topic, or its webhook receiver when
    ``webhook`` is set), drives each order on timers and the sites' pick answers, and hands the
    statuses to a sink (the order-status topic, or the HTTP API with its carrier token)."""

    settings: Settings
    timing: Timing = field(default_factory=Timing)
    group: str | None = None
    client_id: str = "logistics-sim"
    #: Kafka principal: the simulator's own, or a provisioned carrier's (kafka_access.carrier_principal)
    principal: str = LOGISTICS
    say: Callable[[str], None] = print
    counters: Counters = field(default_factory=Counters)
    webhook: WebhookConfig | None = None
    _stop: bool = False
    _jobs: dict = field(default_factory=dict)  # order id -> _Job under way
    _seen: set = field(default_factory=set)  # order ids taken (driven once)
    _failed_by_timeout: set = field(default_factory=set)
    #: (due monotonic time, seq, order id, action: accept | pick | deliver | timeout)
    _timers: list = field(default_factory=list)
    _seq: int = 0
    source: object = None
    sink: object = None

    def stop(self, *_args) -> None:
        self._stop = True

    def _mqtt(self, answers: "queue.SimpleQueue[PickAnswer]"):
        """Service-account connection that sends pick commands and hears every site's answer.

        A clean session is enough: an answer lost while the carrier was down is asked for again,
        because a restarted carrier replays its unfinished orders and re-sends their pick commands,
        which the site answers with the original outcome.
        """
        addr = self.settings.mqtt
        client = new_client(addr, f"{self.client_id}-{id(self):x}")
        subscribed = threading.Event()

        def on_connect(c, _u, _f, rc, _p=None):
            if not rc.is_failure:
                c.subscribe(topics.mqtt_picked_topic("+"), qos=1)

        def on_message(_c, _u, msg):
            try:
                answers.put(PickAnswer.from_mqtt(msg.topic, msg.payload))
            except SchemaError as exc:  # the broker is shared: anyone's junk is logged, never fatal
                log.warning("pick answer on %s ignored: %s", msg.topic, exc)

        client.on_connect = on_connect
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = on_message
        connect(client, addr, keepalive=30)
        client.loop_start()
        if not subscribed.wait(15):
            client.loop_stop()
            raise RuntimeError(f"MQTT broker {addr.host}:{addr.port} did not accept the connection "
                               "and the subscription to the sites' pick answers")
        return client

    def _open_edges(self) -> None:
        """The source of dispatch records and the sink of statuses, Kafka or webhook + API."""
        if self.webhook is not None:
            self.source, self.sink = WebhookOrderSource(self.webhook), ApiStatusSink(self.webhook)
            self.source.bind(self.sink)
        else:
            producer = make_producer(self.settings, self.principal, self.client_id)
            self.sink = KafkaStatusSink(self.settings, producer)
            self.source = KafkaOrderSource(self.settings, self.group or self.settings.group("logistics"),
                                           self.client_id, producer, self.sink, principal=self.principal)
        try:
            self.source.open()
        except BaseException:
            self.sink.close()
            raise
        if self.webhook is not None:
            self.say(f"logistics: webhook {self.source.url} registered with {self.webhook.api_url}; "
                     f"{self.source.log.resumed} order(s) resumed from the journal")

    def run(self, until: Callable[[], bool] | None = None) -> Counters:
        """Until stopped (or ``until()``): take records, drive orders, report; returns the counters."""
        self._open_edges()
        answers: queue.SimpleQueue[PickAnswer] = queue.SimpleQueue()
        try:
            mqtt = self._mqtt(answers)
        except BaseException:
            self._close_edges()
            raise
        last_report = time.monotonic()
        try:
            while not self._stop and not (until and until()):
                for item in self.source.poll():
                    self._receive(item)
                self._take_answers(answers)
                self._fire_timers(mqtt)
                self.sink.pump()
                self.source.commit()
                self.counters.rejected = getattr(self.source, "rejected", 0)
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    self._report()
        finally:
            try:
                mqtt.loop_stop()
                mqtt.disconnect()
            finally:
                self._close_edges()
        return self.counters

    def _close_edges(self) -> None:
        try:
            self.sink.close()
        finally:
            self.source.close()

    def _report(self) -> None:
        c = self.counters
        self.say(f"logistics: {c.orders} orders, {c.accepted} accepted, {c.in_transit} picked "
                 f"({c.short_picks} short), {c.delivered} delivered, {c.failed} failed "
                 f"({c.pick_timeouts} pick timeouts), {c.cancelled} cancelled, {len(self._jobs)} under way")

    def _at(self, delay: float, oid: str, action: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, oid, action))

    def _finish(self, job: _Job) -> None:
        if job.stage == "done" and job.order.order_id in self._jobs:
            self.source.finished(job.ref)
            del self._jobs[job.order.order_id]

    def _receive(self, item: Received) -> None:
        """A dispatch record: a cancel stops an order not yet picked; a new order id is scheduled."""
        record = item.record
        if isinstance(record, CancelRecord):
            job = self._jobs.get(record.order_id)
            self._cancel(record, job)
            if job is not None:
                self._finish(job)
            return
        if record.order_id in self._seen:
            self.counters.duplicates += 1
            return
        self._seen.add(record.order_id)
        self.counters.orders += 1
        a, p, d, fails = schedule(record.order_id, self.timing)
        self._jobs[record.order_id] = _Job(record, item.ref, fails=fails, deliver_after_s=d - p)
        self.source.started(item.ref)
        self._at(a, record.order_id, "accept")
        self._at(p, record.order_id, "pick")

    def _take_answers(self, answers: "queue.SimpleQueue[PickAnswer]") -> None:
        """The sites' answers to pick commands."""
        while True:
            try:
                ans = answers.get_nowait()
            except queue.Empty:
                return
            job = self._jobs.get(ans.order_id)
            if job is None or job.stage != "picking" or job.order.origin != ans.site_id:
                if ans.order_id in self._failed_by_timeout:
                    self.counters.late_answers += 1
                    log.warning("site %s answered the pick of %s (%g %s) after the timeout; the order "
                                "was reported failed", ans.site_id, ans.order_id, ans.picked, ans.unit)
                continue  # a replayed answer, or another carrier's order on the shared broker
            self._picked(job, ans)
            if job.stage == "in_transit":
                self._at(job.deliver_after_s, ans.order_id, "deliver")
            self._finish(job)

    def _fire_timers(self, mqtt) -> None:
        while self._timers and self._timers[0][0] <= time.monotonic():
            _due, _s, oid, action = heapq.heappop(self._timers)
            job = self._jobs.get(oid)
            if job is None or job.stage == "done":
                continue
            self._advance(job, action, mqtt)
            if job.stage == "picking" and action == "pick":
                self._at(self.timing.pick_timeout_s, oid, "timeout")
            elif job.stage == "in_transit" and action == "pick":  # delivery leg: no site to ask
                self._at(job.deliver_after_s, oid, "deliver")
            if job.stage == "done" and action == "timeout":
                self._failed_by_timeout.add(oid)
            self._finish(job)

    def _status(self, order_id: str, status: str, qty: float | None = None, reason: str | None = None,
                at=None) -> None:
        self.sink.send(OrderStatus(order_id=order_id, status=status, at=at or utc_now(), qty=qty, reason=reason))

    def _cancel(self, record: CancelRecord, job: _Job | None) -> None:
        if job is None or job.stage == "done":
            return  # unknown here (already finished or never seen): nothing to stop
        if job.stage in ("new", "accepted"):
            job.stage = "done"
            self.counters.cancelled += 1
            self._status(record.order_id, "cancelled", reason=record.reason)
        else:  # the pick was asked for or the goods are on the road: the true outcome follows
            self.counters.cancel_ignored += 1

    def _advance(self, job: _Job, action: str, mqtt) -> None:
        o = job.order
        if action == "accept" and job.stage == "new":
            if job.fails:
                job.stage = "done"
                self.counters.failed += 1
                self._status(o.order_id, "failed", reason="no vehicle available for the route")
                return
            job.stage = "accepted"
            self.counters.accepted += 1
            self._status(o.order_id, "accepted")
        elif action == "pick" and job.stage == "accepted":
            if o.leg == "supply":
                try:
                    payload = site_commands.PickCommand(o.order_id, o.material, o.qty, o.unit).to_json()
                except SchemaError as exc:  # an order the pick contract cannot carry (a unit over 32 characters)
                    job.stage = "done"
                    self.counters.failed += 1
                    self._status(o.order_id, "failed", reason=f"pick command not sendable: {exc}")
                    return
                info = mqtt.publish(topics.mqtt_pick_topic(o.origin), payload, qos=1)
                info.wait_for_publish(10)
                self.counters.picks_sent += 1
                job.stage = "picking"  # in_transit only once the site says what it handed over
            else:
                job.stage = "in_transit"
                self.counters.in_transit += 1
                self._status(o.order_id, "in_transit")
        elif action == "timeout" and job.stage == "picking":
            job.stage = "done"
            self.counters.failed += 1
            self.counters.pick_timeouts += 1
            self._status(o.order_id, "failed",
                         reason=f"site did not confirm the pick within {self.timing.pick_timeout_s:g} s")
        elif action == "deliver" and job.stage == "in_transit":
            job.stage = "done"
            self.counters.delivered += 1
            qty = o.qty if job.picked is None else job.picked
            self._status(o.order_id, "delivered", qty=qty, reason=job.short_reason)

    def _picked(self, job: _Job, ans: PickAnswer) -> None:
        """The site said what it handed over: in transit with that quantity, or failed with its reason."""
        o = job.order
        picked = ans.picked
        if picked > o.qty:
            log.warning("site %s reports %g %s picked for order %s of %g; carrying the ordered quantity",
                        ans.site_id, picked, o.unit, o.order_id, o.qty)
            picked = o.qty
        if picked <= 0:
            job.stage = "done"
            self.counters.failed += 1
            self._status(o.order_id, "failed",
                         reason=f"site {ans.site_id} handed over nothing: {ans.reason or 'no reason given'}")
            return
        job.picked = picked
        job.stage = "in_transit"
        self.counters.in_transit += 1
        if picked < o.qty:
            self.counters.short_picks += 1
            job.short_reason = (f"short pick at {ans.site_id}: {picked:g} of {o.qty:g} {o.unit}"
                                + (f" ({ans.reason})" if ans.reason else ""))
        self._status(o.order_id, "in_transit", qty=picked, reason=job.short_reason, at=ans.at)
