"""A simulated logistics system: takes dispatch orders, drives them, reports their status.

It behaves like a real carrier integrated through the documented contract (docs/dispatcher.md):

* consumes the dispatch-orders topic (orders and cancel records);
* per order, after realistic (jittered, deterministic per order id) delays, publishes status
  records ``accepted`` -> ``in_transit`` (goods picked at the origin) -> ``delivered`` (with the
  delivered quantity) to the order-status topic, keyed by order id; a configurable share of orders
  ``failed`` with a reason instead (no vehicle: nothing was picked);
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
* offsets are committed only up to the oldest order still under way, so a crash never loses one.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from vreserve import kafka_clients, topics
from vreserve.decode import key_text, safe_text
from vreserve.kafka_access import LOGISTICS
from vreserve.mqtt import connect, new_client
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus, decode_dispatch_record
from vreserve.schemas.readings import DeadLetter
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
    partition: int
    offset: int
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
        from vreserve.schemas.common import check_version, finite_number, loads_object, parse_ts

        parts = topic.split("/")
        if len(parts) != 5 or parts[:3] != ["vr", "v1", "sites"] or parts[4] != "picked":
            raise SchemaError(f"not a pick answer topic: {topic}")
        obj = loads_object(payload, "pick answer")
        check_version(obj, 1, "pick answer")
        order_id = obj.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            raise SchemaError("pick answer without order_id")
        picked = finite_number(obj.get("picked"), "picked")
        requested = finite_number(obj.get("requested"), "requested")
        if picked < 0:
            raise SchemaError("picked must not be negative")
        reason = obj.get("reason")
        return cls(parts[3], order_id, str(obj.get("material", "")), requested, picked, str(obj.get("unit", "")),
                   parse_ts(obj.get("ts"), "ts"), reason if isinstance(reason, str) and reason else None)


@dataclass
class LogisticsSimulator:
    settings: Settings
    timing: Timing = field(default_factory=Timing)
    group: str | None = None
    client_id: str = "logistics-sim"
    #: Kafka principal: the simulator's own, or a provisioned carrier's (kafka_access.carrier_principal)
    principal: str = LOGISTICS
    say: Callable[[str], None] = print
    counters: Counters = field(default_factory=Counters)
    _stop: bool = False
    #: statuses handed to the producer and not confirmed yet: (future, key, value); offsets are
    #: committed only once the statuses sent before them are confirmed, so a crash during a broker
    #: outage loses no status
    _unconfirmed: list = field(default_factory=list)
    #: offsets to commit once these futures (the statuses sent before them) are confirmed
    _commit_after: tuple[dict, list] | None = None
    #: statuses the producer would not take (no metadata: the broker is away), sent again later
    _unsent: list = field(default_factory=list)
    _last_commit: float = 0.0
    _unsent_retry_at: float = 0.0
    _committed: dict = field(default_factory=dict)

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

    def run(self, until: Callable[[], bool] | None = None) -> Counters:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        consumer = kafka_clients.consumer(
            self.settings, self.principal, self.settings.topic(topics.DISPATCH_ORDERS),
            group_id=self.group or self.settings.group("logistics"),
            client_id=self.client_id, enable_auto_commit=False, auto_offset_reset="earliest",
            # back within about a second of a broker's return (the client's default backs off to 30 s)
            reconnect_backoff_max_ms=1000, request_timeout_ms=10000,
        )
        # statuses are not waited for one by one: through a broker outage they wait in the producer
        # (idempotent, retried for up to 10 min) while orders keep moving; sends never block > 2 s
        producer = kafka_clients.producer(self.settings, self.principal, client_id=self.client_id,
                                          enable_idempotence=True, linger_ms=5, max_block_ms=2000,
                                          request_timeout_ms=10000, delivery_timeout_ms=600000,
                                          reconnect_backoff_max_ms=1000)
        answers: queue.SimpleQueue[PickAnswer] = queue.SimpleQueue()
        mqtt = self._mqtt(answers)
        jobs: dict[str, _Job] = {}
        seen: set[str] = set()
        failed_by_timeout: set[str] = set()
        # (due monotonic time, seq, order id, action: accept | pick | deliver | timeout)
        timers: list[tuple[float, int, str, str]] = []
        seq = 0

        def at(delay: float, oid: str, action: str) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(timers, (time.monotonic() + delay, seq, oid, action))

        # per partition: offsets of records still under way, and the highest offset read
        pending: dict[int, set[int]] = {}
        high: dict[int, int] = {}
        topic = self.settings.topic(topics.DISPATCH_ORDERS)
        last_report = time.monotonic()

        def finish(job: _Job) -> None:
            if job.stage == "done" and job.order.order_id in jobs:
                pending[job.partition].discard(job.offset)
                del jobs[job.order.order_id]

        try:
            while not self._stop and not (until and until()):
                batch = consumer.poll(timeout_ms=100, max_records=500)
                for tp, records in batch.items():
                    for rec in records:
                        high[tp.partition] = rec.offset
                        try:
                            record = decode_dispatch_record(rec.value or b"")
                        except Exception as exc:  # noqa: BLE001 - decoding is pure: the record is to blame
                            self.counters.rejected += 1
                            self._dead_letter(producer, rec, exc)
                            continue
                        if isinstance(record, CancelRecord):
                            job = jobs.get(record.order_id)
                            self._cancel(record, job, producer)
                            if job is not None:
                                finish(job)
                            continue
                        if record.order_id in seen:
                            self.counters.duplicates += 1
                            continue
                        seen.add(record.order_id)
                        self.counters.orders += 1
                        a, p, d, fails = schedule(record.order_id, self.timing)
                        jobs[record.order_id] = _Job(record, tp.partition, rec.offset, fails=fails,
                                                     deliver_after_s=d - p)
                        pending.setdefault(tp.partition, set()).add(rec.offset)
                        at(a, record.order_id, "accept")
                        at(p, record.order_id, "pick")
                while True:  # the sites' answers to pick commands
                    try:
                        ans = answers.get_nowait()
                    except queue.Empty:
                        break
                    job = jobs.get(ans.order_id)
                    if job is None or job.stage != "picking" or job.order.origin != ans.site_id:
                        if ans.order_id in failed_by_timeout:
                            self.counters.late_answers += 1
                            log.warning("site %s answered the pick of %s (%g %s) after the timeout; the order "
                                        "was reported failed", ans.site_id, ans.order_id, ans.picked, ans.unit)
                        continue  # a replayed answer, or another carrier's order on the shared broker
                    self._picked(job, ans, producer)
                    if job.stage == "in_transit":
                        at(job.deliver_after_s, ans.order_id, "deliver")
                    finish(job)
                while timers and timers[0][0] <= time.monotonic():
                    _due, _s, oid, action = heapq.heappop(timers)
                    job = jobs.get(oid)
                    if job is None or job.stage == "done":
                        continue
                    self._advance(job, action, producer, mqtt)
                    if job.stage == "picking" and action == "pick":
                        at(self.timing.pick_timeout_s, oid, "timeout")
                    elif job.stage == "in_transit" and action == "pick":  # delivery leg: no site to ask
                        at(job.deliver_after_s, oid, "deliver")
                    if job.stage == "done" and action == "timeout":
                        failed_by_timeout.add(oid)
                    finish(job)
                self._confirm_statuses(producer)
                self._commit_when_confirmed(consumer, topic, pending, high, TopicPartition, OffsetAndMetadata)
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    c = self.counters
                    self.say(f"logistics: {c.orders} orders, {c.accepted} accepted, {c.in_transit} picked "
                             f"({c.short_picks} short), {c.delivered} delivered, {c.failed} failed "
                             f"({c.pick_timeouts} pick timeouts), {c.cancelled} cancelled, {len(jobs)} under way")
        finally:
            try:
                producer.flush(10)
                producer.close(5)
                mqtt.loop_stop()
                mqtt.disconnect()
            finally:
                consumer.close()
        return self.counters

    def _dead_letter(self, producer, rec, exc: Exception) -> None:
        """A dispatch record we cannot use: to the logistics dead-letter topic with the reason and
        its original bytes, before its offset can be committed."""
        reason = safe_text(exc if isinstance(exc, SchemaError) else
                           f"the carrier could not decode this record: {type(exc).__name__}: {exc}")
        log.warning("dispatch record at %d:%d rejected: %s", rec.partition, rec.offset, reason[:300])
        letter = DeadLetter(source=f"kafka:{rec.topic}", reason=reason, payload=rec.value or b"", at=utc_now(),
                            context={"partition": rec.partition, "offset": rec.offset, "key": key_text(rec.key)})
        producer.send(self.settings.topic(topics.LOGISTICS_DEAD_LETTER), key=rec.key,
                      value=letter.to_json()).get(30)

    def _commit_when_confirmed(self, consumer, topic, pending, high, TopicPartition, OffsetAndMetadata) -> None:
        """Every 0.5 s: note the offsets of finished orders with the statuses still unconfirmed at
        that moment; commit them once those statuses are confirmed (never before)."""
        if self._commit_after is not None:
            offsets, futures = self._commit_after
            if not all(f.is_done for f in futures):
                return
            self._commit_after = None
            if not any(f.failed() for f in futures):  # a failed one is being sent again: next round
                self._commit(consumer, offsets)
            return
        if self._unsent or time.monotonic() - self._last_commit < 0.5:
            return
        self._last_commit = time.monotonic()
        offsets = {}
        for part, hi in high.items():
            under_way = pending.get(part)
            nxt = min(under_way) if under_way else hi + 1
            offsets[TopicPartition(topic, part)] = OffsetAndMetadata(nxt, "", -1)
        self._commit_after = (offsets, [f for f, _k, _v in self._unconfirmed])

    def _commit(self, consumer, offsets: dict) -> None:
        if offsets and offsets != self._committed:
            try:
                consumer.commit(offsets, timeout_ms=2000)
                self._committed = offsets
            except Exception as exc:  # a rebalance: the next commit catches up
                log.warning("offset commit failed: %s", exc)

    def _status(self, producer, order_id: str, status: str, qty: float | None = None, reason: str | None = None,
                at=None):
        rec = OrderStatus(order_id=order_id, status=status, at=at or utc_now(), qty=qty, reason=reason)
        self._send_status(producer, order_id.encode(), rec.to_json())

    def _send_status(self, producer, key: bytes, value: bytes) -> None:
        from kafka.errors import KafkaError

        if self._unsent:  # keep the order of statuses per order: behind the ones still waiting
            self._unsent.append((key, value))
            return
        try:
            future = producer.send(self.settings.topic(topics.ORDER_STATUS), key=key, value=value)
        except KafkaError as exc:
            log.warning("order status not taken by the producer (%s); sent again when the broker is back", exc)
            self._unsent.append((key, value))
            return
        self._unconfirmed.append((future, key, value))

    def _confirm_statuses(self, producer) -> None:
        """Drop confirmed statuses; send again the ones the broker refused or never took."""
        from kafka.errors import KafkaError

        still, again = [], []
        for future, key, value in self._unconfirmed:
            if not future.is_done:
                still.append((future, key, value))
            elif future.failed():
                log.warning("order status not delivered (%s); sending it again", future.exception)
                again.append((key, value))
        self._unconfirmed = still
        if not again and (not self._unsent or time.monotonic() < self._unsent_retry_at):
            return
        self._unsent_retry_at = time.monotonic() + 1.0
        waiting, self._unsent = again + self._unsent, []
        for i, (key, value) in enumerate(waiting):
            try:
                future = producer.send(self.settings.topic(topics.ORDER_STATUS), key=key, value=value)
            except KafkaError:
                self._unsent = waiting[i:]
                return
            self._unconfirmed.append((future, key, value))

    def _cancel(self, record: CancelRecord, job: _Job | None, producer) -> None:
        if job is None or job.stage == "done":
            return  # unknown here (already finished or never seen): nothing to stop
        if job.stage in ("new", "accepted"):
            job.stage = "done"
            self.counters.cancelled += 1
            self._status(producer, record.order_id, "cancelled", reason=record.reason)
        else:  # the pick was asked for or the goods are on the road: the true outcome follows
            self.counters.cancel_ignored += 1

    def _advance(self, job: _Job, action: str, producer, mqtt) -> None:
        o = job.order
        if action == "accept" and job.stage == "new":
            if job.fails:
                job.stage = "done"
                self.counters.failed += 1
                self._status(producer, o.order_id, "failed", reason="no vehicle available for the route")
                return
            job.stage = "accepted"
            self.counters.accepted += 1
            self._status(producer, o.order_id, "accepted")
        elif action == "pick" and job.stage == "accepted":
            if o.leg == "supply":
                payload = json.dumps({"v": 1, "order_id": o.order_id, "material": o.material,
                                      "qty": o.qty, "unit": o.unit}).encode()
                info = mqtt.publish(topics.mqtt_pick_topic(o.origin), payload, qos=1)
                info.wait_for_publish(10)
                self.counters.picks_sent += 1
                job.stage = "picking"  # in_transit only once the site says what it handed over
            else:
                job.stage = "in_transit"
                self.counters.in_transit += 1
                self._status(producer, o.order_id, "in_transit")
        elif action == "timeout" and job.stage == "picking":
            job.stage = "done"
            self.counters.failed += 1
            self.counters.pick_timeouts += 1
            self._status(producer, o.order_id, "failed",
                         reason=f"site did not confirm the pick within {self.timing.pick_timeout_s:g} s")
        elif action == "deliver" and job.stage == "in_transit":
            job.stage = "done"
            self.counters.delivered += 1
            qty = o.qty if job.picked is None else job.picked
            self._status(producer, o.order_id, "delivered", qty=qty, reason=job.short_reason)

    def _picked(self, job: _Job, ans: PickAnswer, producer) -> None:
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
            self._status(producer, o.order_id, "failed",
                         reason=f"site {ans.site_id} handed over nothing: {ans.reason or 'no reason given'}")
            return
        job.picked = picked
        job.stage = "in_transit"
        self.counters.in_transit += 1
        if picked < o.qty:
            self.counters.short_picks += 1
            job.short_reason = (f"short pick at {ans.site_id}: {picked:g} of {o.qty:g} {o.unit}"
                                + (f" ({ans.reason})" if ans.reason else ""))
        self._status(producer, o.order_id, "in_transit", qty=picked, reason=job.short_reason, at=ans.at)
