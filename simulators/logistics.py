"""A simulated logistics system: takes dispatch orders, drives them, reports their status.

It behaves like a real carrier integrated through the documented contract (docs/dispatcher.md):

* consumes the dispatch-orders topic (orders and cancel records);
* per order, after realistic (jittered, deterministic per order id) delays, publishes status
  records ``accepted`` -> ``in_transit`` (goods picked at the origin) -> ``delivered`` (with the
  delivered quantity) to the order-status topic, keyed by order id; a configurable share of orders
  ``failed`` with a reason instead (no vehicle: nothing was picked);
* when a supply-leg order is picked, sends the site a pick command over MQTT
  (``vr/v1/sites/{site_id}/commands/pick``), so the simulated site's stock falls and the next
  reading - and the next plan - sees it;
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
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from vreserve import topics
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus, decode_dispatch_record
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
    rejected: int = 0


@dataclass
class _Job:
    order: DispatchOrder
    partition: int
    offset: int
    stage: str = "new"  # new -> accepted -> in_transit -> done
    fails: bool = False


@dataclass
class LogisticsSimulator:
    settings: Settings
    timing: Timing = field(default_factory=Timing)
    group: str | None = None
    client_id: str = "logistics-sim"
    say: Callable[[str], None] = print
    counters: Counters = field(default_factory=Counters)
    _stop: bool = False

    def stop(self, *_args) -> None:
        self._stop = True

    def _mqtt(self):
        import paho.mqtt.client as mqtt

        addr = self.settings.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.client_id}-{id(self):x}")
        if addr.username:
            client.username_pw_set(addr.username, addr.password)
        connected = threading.Event()
        client.on_connect = lambda c, u, f, rc, p=None: connected.set()
        client.connect(addr.host, addr.port, keepalive=30)
        client.loop_start()
        if not connected.wait(15):
            raise RuntimeError(f"MQTT broker {addr.host}:{addr.port} did not accept the connection")
        return client

    def run(self, until: Callable[[], bool] | None = None) -> Counters:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        consumer = KafkaConsumer(
            self.settings.topic(topics.DISPATCH_ORDERS),
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group or self.settings.group("logistics"),
            client_id=self.client_id, enable_auto_commit=False, auto_offset_reset="earliest",
        )
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, client_id=self.client_id,
                                 acks="all", enable_idempotence=True, linger_ms=5)
        mqtt = self._mqtt()
        jobs: dict[str, _Job] = {}
        seen: set[str] = set()
        timers: list[tuple[float, int, str]] = []  # (due monotonic time, seq, order id)
        seq = 0
        # per partition: offsets of records still under way, and the highest offset read
        pending: dict[int, set[int]] = {}
        high: dict[int, int] = {}
        topic = self.settings.topic(topics.DISPATCH_ORDERS)
        last_report = time.monotonic()
        try:
            while not self._stop and not (until and until()):
                batch = consumer.poll(timeout_ms=100, max_records=500)
                now = time.monotonic()
                for tp, records in batch.items():
                    for rec in records:
                        high[tp.partition] = rec.offset
                        try:
                            record = decode_dispatch_record(rec.value or b"")
                        except SchemaError as exc:
                            self.counters.rejected += 1
                            log.warning("dispatch record at %s:%d rejected: %s", tp.partition, rec.offset, exc)
                            continue
                        if isinstance(record, CancelRecord):
                            self._cancel(record, jobs, producer)
                            continue
                        if record.order_id in seen:
                            self.counters.duplicates += 1
                            continue
                        seen.add(record.order_id)
                        self.counters.orders += 1
                        a, p, d, fails = schedule(record.order_id, self.timing)
                        jobs[record.order_id] = _Job(record, tp.partition, rec.offset, fails=fails)
                        pending.setdefault(tp.partition, set()).add(rec.offset)
                        for delay in (a, p, d):
                            seq += 1
                            heapq.heappush(timers, (now + delay, seq, record.order_id))
                while timers and timers[0][0] <= time.monotonic():
                    _due, _s, oid = heapq.heappop(timers)
                    job = jobs.get(oid)
                    if job is None or job.stage == "done":
                        continue
                    self._advance(job, producer, mqtt)
                    if job.stage == "done":
                        pending[job.partition].discard(job.offset)
                        del jobs[oid]
                self._commit(consumer, topic, pending, high, TopicPartition, OffsetAndMetadata)
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    c = self.counters
                    self.say(f"logistics: {c.orders} orders, {c.accepted} accepted, {c.in_transit} picked, "
                             f"{c.delivered} delivered, {c.failed} failed, {c.cancelled} cancelled, "
                             f"{len(jobs)} under way")
        finally:
            try:
                producer.flush(10)
                producer.close(5)
                mqtt.loop_stop()
                mqtt.disconnect()
            finally:
                consumer.close()
        return self.counters

    def _commit(self, consumer, topic, pending, high, TopicPartition, OffsetAndMetadata) -> None:
        offsets = {}
        for part, hi in high.items():
            under_way = pending.get(part)
            nxt = min(under_way) if under_way else hi + 1
            offsets[TopicPartition(topic, part)] = OffsetAndMetadata(nxt, "", -1)
        if offsets:
            try:
                consumer.commit(offsets)
            except Exception as exc:  # a rebalance: the next commit catches up
                log.warning("offset commit failed: %s", exc)

    def _status(self, producer, order_id: str, status: str, qty: float | None = None, reason: str | None = None,
                at=None):
        rec = OrderStatus(order_id=order_id, status=status, at=at or utc_now(), qty=qty, reason=reason)
        producer.send(self.settings.topic(topics.ORDER_STATUS), key=order_id.encode(), value=rec.to_json()).get(30)

    def _cancel(self, record: CancelRecord, jobs: dict, producer) -> None:
        job = jobs.get(record.order_id)
        if job is None or job.stage == "done":
            return  # unknown here (already finished or never seen): nothing to stop
        if job.stage in ("new", "accepted"):
            job.stage = "done"
            self.counters.cancelled += 1
            self._status(producer, record.order_id, "cancelled", reason=record.reason)
        else:
            self.counters.cancel_ignored += 1

    def _advance(self, job: _Job, producer, mqtt) -> None:
        o = job.order
        if job.stage == "new":
            if job.fails:
                job.stage = "done"
                self.counters.failed += 1
                self._status(producer, o.order_id, "failed", reason="no vehicle available for the route")
                return
            job.stage = "accepted"
            self.counters.accepted += 1
            self._status(producer, o.order_id, "accepted")
        elif job.stage == "accepted":
            picked_at = utc_now()  # the in_transit time is when the pick was ordered at the site
            if o.leg == "supply":
                payload = json.dumps({"v": 1, "order_id": o.order_id, "material": o.material,
                                      "qty": o.qty, "unit": o.unit}).encode()
                info = mqtt.publish(topics.mqtt_pick_topic(o.origin), payload, qos=1)
                info.wait_for_publish(10)
                self.counters.picks_sent += 1
            job.stage = "in_transit"
            self.counters.in_transit += 1
            self._status(producer, o.order_id, "in_transit", at=picked_at)
        elif job.stage == "in_transit":
            job.stage = "done"
            self.counters.delivered += 1
            self._status(producer, o.order_id, "delivered", qty=o.qty)
