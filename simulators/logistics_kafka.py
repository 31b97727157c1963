"""The simulated logistics company's Kafka edges: orders from the dispatch-orders topic, statuses to
the order-status topic (the integration for carriers that run a Kafka client).

At-least-once: a dispatch record's offset is committed only once the order it carried is finished
*and* every status sent before the commit is confirmed by the broker, so a crash (or a broker
outage) loses neither an order nor a status; a replay is harmless because status ids are
deterministic and an order id seen before is not driven twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from vreserve import kafka_clients, topics
from vreserve.decode import key_text, safe_text
from vreserve.kafka_access import LOGISTICS
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import OrderStatus, decode_dispatch_record
from vreserve.schemas.readings import DeadLetter
from vreserve.settings import Settings

log = logging.getLogger("vreserve.logistics")


@dataclass(frozen=True)
class Received:
    """One dispatch record as a source hands it over: the decoded record, and where it came from."""

    record: object  # DispatchOrder | CancelRecord
    ref: tuple[int, int] | str | None = None  # (partition, offset) on the topic; the order id from a webhook


def make_producer(settings: Settings, principal: str, client_id: str):
    """Statuses are not waited for one by one: through a broker outage they wait in the producer
    (idempotent, retried for up to 10 min) while orders keep moving; sends never block > 2 s."""
    return kafka_clients.producer(settings, principal, client_id=client_id, enable_idempotence=True, linger_ms=5,
                                  max_block_ms=2000, request_timeout_ms=10000, delivery_timeout_ms=600000,
                                  reconnect_backoff_max_ms=1000)


@dataclass
class KafkaStatusSink:
    """Statuses to the order-status topic, keyed by order id, in the order they were produced."""

    settings: Settings
    producer: object
    #: statuses handed to the producer and not confirmed yet: (future, key, value)
    unconfirmed: list = field(default_factory=list)
    #: statuses the producer would not take (no metadata: the broker is away), sent again later
    unsent: list = field(default_factory=list)
    _retry_at: float = 0.0

    def send(self, status: OrderStatus) -> None:
        key, value = status.order_id.encode(), status.to_json()
        if self.unsent:  # keep the order of statuses per order: behind the ones still waiting
            self.unsent.append((key, value))
            return
        try:
            future = self.producer.send(self.settings.topic(topics.ORDER_STATUS), key=key, value=value)
        except KafkaError as exc:
            log.warning("order status not taken by the producer (%s); sent again when the broker is back", exc)
            self.unsent.append((key, value))
            return
        self.unconfirmed.append((future, key, value))

    def pump(self) -> None:
        """Drop confirmed statuses; send again the ones the broker refused or never took."""

        still, again = [], []
        for future, key, value in self.unconfirmed:
            if not future.is_done:
                still.append((future, key, value))
            elif future.failed():
                log.warning("order status not delivered (%s); sending it again", future.exception)
                again.append((key, value))
        self.unconfirmed = still
        if not again and (not self.unsent or time.monotonic() < self._retry_at):
            return
        self._retry_at = time.monotonic() + 1.0
        waiting, self.unsent = again + self.unsent, []
        for i, (key, value) in enumerate(waiting):
            try:
                future = self.producer.send(self.settings.topic(topics.ORDER_STATUS), key=key, value=value)
            except KafkaError:
                self.unsent = waiting[i:]
                return
            self.unconfirmed.append((future, key, value))

    def close(self) -> None:
        self.producer.flush(10)
        self.producer.close(5)


@dataclass
class KafkaOrderSource:
    """Dispatch records from the topic; offsets committed behind the oldest order still under way."""

    settings: Settings
    group: str
    client_id: str
    producer: object  # for the dead-letter topic (shared with the status sink)
    sink: KafkaStatusSink
    #: per partition: offsets of records still under way, and the highest offset read
    pending: dict = field(default_factory=dict)
    high: dict = field(default_factory=dict)
    rejected: int = 0
    _consumer: object = None
    #: offsets to commit once these futures (the statuses sent before them) are confirmed
    _commit_after: tuple[dict, list] | None = None
    _last_commit: float = 0.0
    _committed: dict = field(default_factory=dict)
    #: Kafka principal: the simulator's own, or a provisioned carrier's (kafka_access.carrier_principal)
    principal: str = LOGISTICS

    def open(self) -> None:
        self._consumer = kafka_clients.consumer(
            self.settings, self.principal, self.settings.topic(topics.DISPATCH_ORDERS),
            group_id=self.group, client_id=self.client_id, enable_auto_commit=False, auto_offset_reset="earliest",
            # back within about a second of a broker's return (the client's default backs off to 30 s)
            reconnect_backoff_max_ms=1000, request_timeout_ms=10000)

    def poll(self) -> list[Received]:
        """Decoded records (undecodable ones go to the dead-letter topic with the reason)."""
        out = []
        for tp, records in self._consumer.poll(timeout_ms=100, max_records=500).items():
            for rec in records:
                self.high[tp.partition] = rec.offset
                try:
                    record = decode_dispatch_record(rec.value or b"")
                except Exception as exc:  # noqa: BLE001 - decoding is pure: the record is to blame
                    self.rejected += 1
                    self._dead_letter(rec, exc)
                    continue
                out.append(Received(record, (tp.partition, rec.offset)))
        return out

    def started(self, ref: tuple[int, int] | None) -> None:
        """An order is under way: its offset is not committed until :meth:`finished`."""
        if ref is not None:
            self.pending.setdefault(ref[0], set()).add(ref[1])

    def finished(self, ref: tuple[int, int] | None) -> None:
        if ref is not None:
            self.pending[ref[0]].discard(ref[1])

    def _dead_letter(self, rec, exc: Exception) -> None:
        """A dispatch record we cannot use: to the logistics dead-letter topic with the reason and
        its original bytes, before its offset can be committed."""
        reason = safe_text(exc if isinstance(exc, SchemaError) else
                           f"the carrier could not decode this record: {type(exc).__name__}: {exc}")
        log.warning("dispatch record at %d:%d rejected: %s", rec.partition, rec.offset, reason[:300])
        letter = DeadLetter(source=f"kafka:{rec.topic}", reason=reason, payload=rec.value or b"", at=utc_now(),
                            context={"partition": rec.partition, "offset": rec.offset, "key": key_text(rec.key)})
        self.producer.send(self.settings.topic(topics.LOGISTICS_DEAD_LETTER), key=rec.key,
                           value=letter.to_json()).get(30)

    def commit(self) -> None:
        """Every 0.5 s: note the offsets of finished orders with the statuses still unconfirmed at
        that moment; commit them once those statuses are confirmed (never before)."""

        if self._commit_after is not None:
            offsets, futures = self._commit_after
            if not all(f.is_done for f in futures):
                return
            self._commit_after = None
            if not any(f.failed() for f in futures):  # a failed one is being sent again: next round
                self._commit(offsets)
            return
        if self.sink.unsent or time.monotonic() - self._last_commit < 0.5:
            return
        self._last_commit = time.monotonic()
        topic = self.settings.topic(topics.DISPATCH_ORDERS)
        offsets = {}
        for part, hi in self.high.items():
            under_way = self.pending.get(part)
            nxt = min(under_way) if under_way else hi + 1
            offsets[TopicPartition(topic, part)] = OffsetAndMetadata(nxt, "", -1)
        self._commit_after = (offsets, [f for f, _k, _v in self.sink.unconfirmed])

    def _commit(self, offsets: dict) -> None:
        if offsets and offsets != self._committed:
            try:
                self._consumer.commit(offsets, timeout_ms=2000)
                self._committed = offsets
            except Exception as exc:  # a rebalance: the next commit catches up
                log.warning("offset commit failed: %s", exc)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
