"""The dispatcher service (``vreserve dispatch run``): mode events in, plans and orders out.

One loop, one thread:

1. poll the mode, order-status and demand topics; apply each record to the database (idempotently: mode
   events by event id, statuses by status id); commit the consumer offsets only after that (the
   mode topic's in the dispatchers' consumer group, the others' in the database);
2. for every open emergency, plan each period that has started and has no plan yet, in order
   (the period comes from ``declared_at`` and the period length, and "has a plan" from the
   database, so a restarted dispatcher neither skips nor repeats a period);
3. publish what is stored but not yet published (plans' orders, cancel records, plan summaries)
   with an idempotent producer (acks=all), then mark it published: an outbox, so a plan is made and
   stored on time from the database alone while the broker is away, and goes out when it is back;
4. close out ended emergencies (open orders closed, cancel records published).

Every Kafka call on this path is bounded in time (``KAFKA_CALL_MAX_S``): a broker outage delays
publication, never planning. A plan supersedes only orders published some time before its period
began (``supersede_cutoff``) and still ``open`` after every status on the topic was applied; when the
statuses cannot be read (the broker is away), it supersedes nothing and plans the remainder.

Scaled out by region over Kafka (issue 17): the dispatchers are one consumer group on the mode
topic, which is keyed by region, so each owns a set of its partitions and plans, publishes and closes
out only the emergencies of the regions that hash to them (the producers' partitioner: murmur2 of
the region). Everything a dispatcher needs to take a region over is in the database (emergencies,
plans stored and not yet published, cancels), so a new owner after a rebalance resumes from there.
Handing a partition back first settles the publication in flight (confirmed and marked, within
``KAFKA_CALL_MAX_S``). Each dispatcher holds a slot (a PostgreSQL advisory lock, released when its
process dies) that names its static group membership: a restarted dispatcher takes its predecessor's
partitions back at once instead of after the session timeout. The order-status and demand topics
stay group-less: every dispatcher applies every record (idempotently, by status and update id),
because a plan's supersede rule needs every status on the topic applied (``catch_up``) and those
topics are keyed by order id and rescue centre, not by region.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Callable

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.admin import MemberToRemove
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from dispatcher import book
from dispatcher.mode import apply_mode_record
from dispatcher.planning import PeriodPlan, PlannerCache, plan_period, read_state
from vreserve import db_access
from vreserve import kafka_clients, topics
from vreserve.kafka_access import DISPATCHER
from vreserve.db import connect
from vreserve.emergencies import ACCEPT_GRACE_MAX_S, supersede_cutoff  # noqa: F401 (the dispatcher's rule, shared)
from vreserve.health import HealthServer, health_status
from vreserve.quarantine import RecordRef, run_guarded, store_rejection
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import DemandUpdate, OrderStatus, StatusError
from vreserve.settings import Settings

log = logging.getLogger("vreserve.dispatcher")

#: Pause before retrying a plan or close-out that failed, s.
RETRY_AFTER_S = 5.0
#: Longest wait to apply the statuses already on the topic before making a plan, s.
CATCH_UP_MAX_S = 3.0
#: Bound of any single blocking Kafka call on the dispatcher's path (end offsets, metadata for a
#: send), s. The client's own default (30-60 s) would stall planning through a broker outage.
KAFKA_CALL_MAX_S = 2.0
#: Pause between two publication attempts while the broker does not take records, s.
PUBLISH_RETRY_S = 1.0
#: The mode consumer group's session: a dispatcher that died without a restart hands its regions
#: over after this long (a restarted one takes them back at once: static membership), ms.
GROUP_SESSION_MS = 10000
#: Longest wait at start for the group to hand this dispatcher its partitions (maybe none), s.
JOIN_MAX_S = 30.0
#: Longest the loop keeps polling only the mode topic while a rebalance is under way (it owns no
#: region meanwhile), before it goes round once and tries again, s.
REBALANCE_MAX_S = 10.0
#: One mode poll while a rebalance is under way, ms.
REBALANCE_POLL_MS = 200


def member_instance_id(group: str, slot: int) -> str:
    """The static group membership of the dispatcher holding ``slot``."""
    return f"{group}-{slot}"


def mode_partition(region: str, partitions: int) -> int:
    """The mode-topic partition of ``region``: the producers' default partitioner (murmur2 of the
    key, as Java's and kafka-python's), so the dispatcher owning it reads the region's events."""
    return (murmur2(region.encode()) & 0x7FFFFFFF) % partitions


class _ModeOwnership(ConsumerRebalanceListener):
    """Keeps the dispatcher's owned mode partitions in step with the group's assignment."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.dispatcher = dispatcher

    def on_partitions_revoked(self, revoked) -> None:
        self.dispatcher.rebalancing = True
        self.dispatcher.hand_back(revoked, settle=True)

    def on_partitions_lost(self, lost) -> None:
        self.dispatcher.rebalancing = True
        self.dispatcher.hand_back(lost, settle=False)

    def on_partitions_assigned(self, assigned) -> None:
        self.dispatcher.take_over(assigned)


@dataclass
class _InFlight:
    """One publication handed to the producer and not yet confirmed by the broker."""

    futures: list
    cancel_ids: list[str]
    plan_ids: list[str]
    orders: int
    handed_at: float


@dataclass
class Counters:
    mode_accepted: int = 0
    mode_rejected: int = 0
    statuses: int = 0
    statuses_duplicate: int = 0
    statuses_rejected: int = 0
    demand_updates: int = 0
    demand_rejected: int = 0
    plans: int = 0
    orders_published: int = 0
    cancels_published: int = 0
    publish_failures: int = 0
    catch_up_incomplete: int = 0


@dataclass
class Dispatcher:
    settings: Settings
    client_id: str = "dispatcher"
    group: str | None = None
    cache: PlannerCache = field(default_factory=PlannerCache)
    #: test hook: exit abruptly (like SIGKILL) right after persisting the plan of this period
    die_after_persist: int | None = None
    say: Callable[[str], None] = print
    counters: Counters = field(default_factory=Counters)
    #: per plan made by this process: emergency, period, status and seconds per step (benchmarks read it)
    plan_timings: list[dict] = field(default_factory=list)
    _stop: bool = False
    _retry_at: dict[str, float] = field(default_factory=dict)
    #: stored plans that cannot be read back (named once each, never published)
    unreadable_plans: set[str] = field(default_factory=set)
    #: for the health endpoint: when the main loop last went round, the last failure per emergency
    last_loop_at: float | None = None
    last_errors: dict[str, str] = field(default_factory=dict)
    _inflight: _InFlight | None = None
    #: mode partitions this dispatcher owns; None outside a consumer group (owns every region)
    owned_partitions: set[int] | None = None
    mode_partitions: int = 0
    #: a rebalance of the mode group is under way: revoked (or not yet joined), not yet assigned
    rebalancing: bool = False
    _publish_retry_at: float = 0.0
    _broker_away_since: float | None = None

    def stop(self, *_args) -> None:
        self._stop = True

    # ------------------------------------------------------------------ I/O setup
    def _mode_consumer(self, slot: int):
        """The mode topic's consumer in the dispatchers' group, static member ``<group>-<slot>``."""
        group = self.settings.group("dispatcher")
        return kafka_clients.consumer(
            self.settings, DISPATCHER,
            group_id=group,
            group_instance_id=member_instance_id(group, slot),
            client_id=f"{self.client_id}-{slot}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            session_timeout_ms=GROUP_SESSION_MS,
            heartbeat_interval_ms=GROUP_SESSION_MS // 4,
            reconnect_backoff_max_ms=1000,
            request_timeout_ms=GROUP_SESSION_MS + 5000,
        )

    def _clients(self):
        # reconnect within a second of the broker's return (the client's default backs off to 30 s)
        consumer = kafka_clients.consumer(
            self.settings, DISPATCHER,
            group_id=None,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            reconnect_backoff_max_ms=1000,
            request_timeout_ms=10000,
        )
        # records handed over during an outage stay in the producer (retried, idempotent) until the
        # broker is back, for up to 10 min; a send never blocks longer than KAFKA_CALL_MAX_S
        producer = kafka_clients.producer(
            self.settings, DISPATCHER,
            client_id=self.client_id,
            enable_idempotence=True,
            linger_ms=5,
            max_block_ms=int(KAFKA_CALL_MAX_S * 1000),
            request_timeout_ms=10000,
            delivery_timeout_ms=600000,
            reconnect_backoff_max_ms=1000,
        )
        return consumer, producer

    def run(self, until: Callable[[], bool] | None = None) -> Counters:
        conn = connect(self.settings.pg_dsn_for(db_access.DISPATCHER), autocommit=True)
        slot = book.claim_dispatcher_slot(conn)
        consumer, producer = self._clients()
        mode_consumer = self._mode_consumer(slot)
        self.producer, self.consumer, self.mode_consumer = producer, consumer, mode_consumer
        try:
            self._assign(consumer, conn)
            self._join(mode_consumer, conn)
            # what a killed predecessor stored for these regions but did not publish goes out first,
            # not after the warm-up's seconds: carriers get it sooner, and the next plan's supersede
            # cut-off sees it published when a punctual dispatcher would have
            self.publish_pending(conn)
            warm_s = self.cache.warm_up()  # the model's one-off start-up costs now, not on the first declare
            self.say(f"dispatcher: started (slot {slot}, mode partitions {sorted(self.owned_partitions or ())} of "
                     f"{self.mode_partitions}; optimizer warmed up in {warm_s:.1f} s); anything stored but not "
                     "yet published was republished")
            self.publish_pending(conn)
            last_status = time.monotonic()
            while not self._stop and not (until and until()):
                self.last_loop_at = time.time()
                self._poll_mode(conn, REBALANCE_MAX_S)
                self._consume(conn, consumer.poll(timeout_ms=100, max_records=500))
                self.tick(conn, utc_now())
                self.publish_pending(conn, wait_s=0.0)
                if time.monotonic() - last_status > 15:
                    last_status = time.monotonic()
                    c = self.counters
                    self.say(f"dispatcher: {c.plans} plans, {c.orders_published} orders and "
                             f"{c.cancels_published} cancels published, {c.statuses} statuses "
                             f"({c.statuses_duplicate} duplicates, {c.statuses_rejected} rejected)")
        finally:
            self._close(conn, slot, mode_consumer, consumer, producer)
        return self.counters

    def _leave_group(self, slot: int) -> None:
        """Take this dispatcher's static membership out of the mode group on a clean stop.

        A static member's client never sends LeaveGroup (KIP-345: so that a restart keeps its
        partitions); without this, its regions stay with a dispatcher that is gone until the
        session times out, and a dispatcher started meanwhile with another slot waits for that
        expiry before the group hands it anything. A SIGKILLed dispatcher cannot do this: the
        session timeout, or its successor reusing the slot, covers that case."""
        group = self.settings.group("dispatcher")
        try:
            admin = kafka_clients.admin(self.settings, DISPATCHER, request_timeout_ms=int(KAFKA_CALL_MAX_S * 1000))
        except Exception as exc:  # noqa: BLE001 - the broker away: the session timeout does it
            self.say(f"dispatcher: could not leave the group (the session timeout will): {exc}")
            return
        try:
            admin.remove_group_members(group, [MemberToRemove(group_instance_id=member_instance_id(group, slot),
                                                              reason="dispatcher stopped")])
        except Exception as exc:  # noqa: BLE001 - reported; the session timeout does it
            self.say(f"dispatcher: could not leave the group (the session timeout will): {exc}")
        finally:
            admin.close()

    def _close(self, conn, slot: int, mode_consumer, consumer, producer) -> None:
        """Settle the publication in flight (marked once confirmed, so whoever owns its regions next
        does not publish it again), leave the group, close the clients; the slot (``conn``) last, so
        that no successor has taken the membership over before it is removed."""
        try:
            if self._inflight is not None:
                self.publish_pending(conn, wait_s=10.0)
        finally:
            try:
                mode_consumer.close()
                self._leave_group(slot)
                producer.flush(10)
                producer.close(5)
            finally:
                consumer.close()
                conn.close()

    @staticmethod
    def _partitions_of(consumer, name: str) -> list[int]:
        """The topic's partitions (waits up to 30 s for them to appear)."""
        deadline = time.monotonic() + 30
        found = consumer.partitions_for_topic(name)
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            found = consumer.partitions_for_topic(name)
        if not found:
            raise RuntimeError(f"topic {name} does not exist (run `vreserve topics`)")
        return sorted(found)

    def _assign(self, consumer, conn) -> None:
        """All partitions of the order-status and demand topics, from the positions stored in the database."""
        stored = book.load_offsets(conn)
        parts = []
        for logical in (topics.ORDER_STATUS, topics.DEMAND):
            name = self.settings.topic(logical)
            parts += [TopicPartition(name, p) for p in self._partitions_of(consumer, name)]
        consumer.assign(parts)
        for tp in parts:
            if (tp.topic, tp.partition) in stored:
                consumer.seek(tp, stored[(tp.topic, tp.partition)])
            else:
                consumer.seek_to_beginning(tp)

    def _join(self, mode_consumer, conn) -> None:
        """Join the dispatchers' group on the mode topic and wait (bounded) for this one's share of
        its partitions, which may be none (more dispatchers than partitions); mode events read
        meanwhile are applied."""
        name = self.settings.topic(topics.MODE)
        self.mode_partitions = len(self._partitions_of(mode_consumer, name))
        self.owned_partitions = set()
        self.rebalancing = True
        mode_consumer.subscribe([name], listener=_ModeOwnership(self))
        self._poll_mode(conn, JOIN_MAX_S)
        if self.rebalancing:
            self.say(f"dispatcher: no share of the mode partitions after {JOIN_MAX_S:g} s; planning none until "
                     "the group assigns some")

    # ------------------------------------------------------------------ ownership (by region)
    def owns(self, region: str) -> bool:
        """Whether this dispatcher plans and publishes ``region``'s emergencies."""
        return (self.owned_partitions is None
                or mode_partition(region, self.mode_partitions) in self.owned_partitions)

    def owned_regions(self, conn) -> list[str] | None:
        """The regions with an emergency that this dispatcher owns; None: every region (no group)."""
        if self.owned_partitions is None:
            return None
        return [r for r in book.emergency_regions(conn) if self.owns(r)]

    def take_over(self, assigned) -> None:
        """Mode partitions newly assigned: read on from the group's committed position (events
        are applied idempotently, so one applied but not yet committed is only seen again). The
        regions' emergencies, stored plans and cancels are in the database, so the next tick and
        publication carry on from where the previous owner stopped."""
        self.owned_partitions = (self.owned_partitions or set()) | {tp.partition for tp in assigned}
        self.rebalancing = False
        if assigned:
            self.say(f"dispatcher: mode partitions {sorted(tp.partition for tp in assigned)} taken over "
                     f"(owns {sorted(self.owned_partitions)})")

    def hand_back(self, partitions, settle: bool) -> None:
        """Mode partitions revoked (``settle``: the publication in flight is confirmed and marked
        first, so the next owner does not publish it again) or lost (nothing left to settle).
        (Called by the group client, maybe on its own thread while ``poll`` waits: a connection of
        its own.)"""
        if settle and self._inflight is not None:
            with connect(self.settings.pg_dsn_for(db_access.DISPATCHER), autocommit=True) as conn:
                self.publish_pending(conn, wait_s=KAFKA_CALL_MAX_S)
        self.owned_partitions = (self.owned_partitions or set()) - {tp.partition for tp in partitions}
        if partitions:
            self.say(f"dispatcher: mode partitions {sorted(tp.partition for tp in partitions)} handed back")

    # ------------------------------------------------------------------ inputs
    def _consume(self, conn, batch, store_offsets: bool = True) -> None:
        if not batch:
            return
        for tp, records in batch.items():
            for rec in records:
                # One bad record never stops the service: bad input is rejected with its reason in
                # handle(); an unexpected failure is counted and, after a few, quarantined.
                ref = RecordRef("dispatcher", rec.topic, rec.partition, rec.offset, rec.key, rec.value or b"")
                run_guarded(conn, ref, partial(self.handle, conn, rec.topic, ref.raw,
                                               f"{rec.partition}:{rec.offset}", ref))
        if store_offsets:
            book.store_offsets(conn, {(tp.topic, tp.partition): recs[-1].offset + 1 for tp, recs in batch.items()})

    def _poll_mode(self, conn, max_s: float) -> None:
        """Poll the mode topic once; while a rebalance is under way, poll it back to back (up to
        ``max_s``) until the group has handed this dispatcher its share.

        Why back to back: kafka-python (3.0.12) forgets a JoinGroup/SyncGroup round that completes
        between two polls and starts another one, which starts another rebalance for every member.
        With a short poll between a status poll and a tick, a round that takes longer than the poll
        (a loaded machine, TLS, another member still to rejoin) then never completes, and the
        dispatcher never gets its regions (the console test's dispatcher, 30 s). Meanwhile it owns
        no region (the eager protocol revoked them all), so it has nothing else to do."""
        self._consume_mode(conn, self.mode_consumer.poll(timeout_ms=100, max_records=500))
        deadline = time.monotonic() + max_s
        while self.rebalancing and not self._stop and time.monotonic() < deadline:
            self._consume_mode(conn, self.mode_consumer.poll(timeout_ms=REBALANCE_POLL_MS, max_records=500))

    def _consume_mode(self, conn, batch) -> None:
        """Apply mode events, then commit the group's position (not waited for: a commit lost to
        an outage or a rebalance only has events seen again, and they are applied idempotently)."""
        if batch:
            self._consume(conn, batch, store_offsets=False)
            self.mode_consumer.commit_async()

    def catch_up(self, conn, max_s: float = CATCH_UP_MAX_S) -> bool:
        """Apply every status (and demand update) already on the topics before a plan is made.

        A plan supersedes the orders no logistics system has accepted; an ``accepted`` status that
        is on the topic but not yet applied would make the plan cancel (and plan again) an order
        that is already being executed. Returns True only when every such record was applied;
        False (the broker is away, or the topic could not be read to its end within ``max_s``)
        tells the plan to supersede nothing. Bounded: at most ``KAFKA_CALL_MAX_S`` + ``max_s``.
        """
        consumer = getattr(self, "consumer", None)
        if consumer is None:
            return True

        parts = [tp for tp in consumer.assignment() if not tp.topic.endswith(topics.MODE)]
        deadline = time.monotonic() + max_s
        try:
            ends = consumer.end_offsets(parts, timeout_ms=int(KAFKA_CALL_MAX_S * 1000))
            while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in parts):
                self._consume(conn, consumer.poll(timeout_ms=100, max_records=500))
            behind = [tp for tp in parts if consumer.position(tp) < ends[tp]]
        except KafkaError as exc:
            self.counters.catch_up_incomplete += 1
            log.warning("statuses could not be read to the end of the topic (%s): this plan supersedes "
                        "no order", exc)
            return False
        if behind:
            self.counters.catch_up_incomplete += 1
            log.warning("statuses not read to the end within %.1f s: this plan supersedes no order", max_s)
        return not behind

    def handle(self, conn, topic: str, value: bytes, position: str, ref: RecordRef | None = None) -> None:
        if topic == self.settings.topic(topics.MODE):
            outcome = apply_mode_record(conn, value, position)
            if outcome.duplicate:
                return
            if outcome.accepted:
                self.counters.mode_accepted += 1
                self.say(f"dispatcher: {outcome.kind} accepted for region {outcome.region} "
                         f"({outcome.emergency_id})")
            else:
                self.counters.mode_rejected += 1
                record = outcome.error_record(value)
                self.producer.send(self.settings.topic(topics.MODE_ERRORS), key=(outcome.region or "?").encode(),
                                   value=record.to_json()).get(timeout=30)
                self.say(f"dispatcher: mode event rejected: {outcome.error}")
        elif topic == self.settings.topic(topics.DEMAND):
            try:
                update = DemandUpdate.from_json(value)
            except SchemaError as exc:
                self._reject(conn, ref, f"demand update rejected: {exc}")
                self.counters.demand_rejected += 1
                return
            if not book.region_known(conn, update.region):
                self.counters.demand_rejected += 1
                self._reject(conn, ref, f"demand update {update.update_id} for unknown region {update.region!r}")
                return
            if book.store_demand_update(conn, update):
                self.counters.demand_updates += 1
        elif topic == self.settings.topic(topics.ORDER_STATUS):
            try:
                status = OrderStatus.from_json(value)
            except SchemaError as exc:
                self._refuse_status(conn, ref, value, f"malformed order status: {exc}", None)
                return
            try:
                result = book.apply_status(conn, status)
            except book.StatusRefused as exc:
                self._refuse_status(conn, ref, value, str(exc), status)
                return
            if result == "applied":
                self.counters.statuses += 1
            elif result == "duplicate":
                self.counters.statuses_duplicate += 1
            else:
                self._refuse_status(conn, ref, value, f"unknown order id {status.order_id!r}", status)

    def _reject(self, conn, ref: RecordRef | None, reason: str) -> None:
        """Keep a rejected status or demand record with its reason and original bytes (migration 0050)."""
        log.warning("%s%s", f"{ref.topic}[{ref.partition}]@{ref.offset}: " if ref else "", reason)
        if ref is not None:
            store_rejection(conn, ref, reason)

    def _refuse_status(self, conn, ref: RecordRef | None, value: bytes, reason: str,
                       status: OrderStatus | None) -> None:
        """Count, log and publish a refused status on ``order-status.errors`` (keyed by order id),
        so the carrier sees what was refused and why. Not waited for: the producer keeps it through
        a broker outage; a send that cannot even start (no metadata) is logged."""

        self.counters.statuses_rejected += 1
        self._reject(conn, ref, f"order status refused: {reason}")
        record = StatusError(error=reason, at=utc_now(), raw=value[:2000].decode("utf-8", "replace"),
                             status_id=status.status_id if status else None,
                             order_id=status.order_id if status else None,
                             status=status.status if status else None)
        try:
            self.producer.send(self.settings.topic(topics.ORDER_STATUS_ERRORS),
                               key=(status.order_id if status else "?").encode(), value=record.to_json())
        except KafkaError as exc:
            log.warning("refusal of an order status not published (%s): %s", exc, reason)

    # ------------------------------------------------------------------ the clock
    def tick(self, conn, now: datetime) -> None:
        """Plan what is due, close out what ended. A failure (a demand file gone, the broker away)
        is reported and retried after a pause; it never stops the service or skips the period."""
        for em in book.open_emergencies(conn):
            if not self.owns(em.region):
                continue
            if now < em.declared_at or time.monotonic() < self._retry_at.get(em.emergency_id, 0.0):
                continue
            current = min(em.period_at(now), em.periods)
            try:
                done = book.planned_periods(conn, em.emergency_id)
                due = [p for p in range(1, current + 1) if p not in done]
                caught_up = self.catch_up(conn) if due else False
                for period in due:
                    cutoff = supersede_cutoff(em, period) if caught_up else None
                    self.plan_and_publish(conn, em, period, now, cutoff)
                    caught_up = False  # the orders of the plan just stored are not published yet
            except Exception as exc:  # noqa: BLE001 - reported, retried; the service stays up
                self._failed(em.emergency_id, f"planning {em.emergency_id} failed: {exc}")
        for em in book.ended_not_closed_out(conn):
            if not self.owns(em.region):
                continue
            if time.monotonic() < self._retry_at.get(em.emergency_id, 0.0):
                continue
            try:
                n = book.close_out(conn, em, now)
                self.publish_pending(conn)
                book.mark_closed_out(conn, em.emergency_id, now)
                self.say(f"dispatcher: {em.emergency_id} ended: {n} open orders closed with cancel records")
            except Exception as exc:  # noqa: BLE001
                self._failed(em.emergency_id, f"closing out {em.emergency_id} failed: {exc}")

    def _failed(self, emergency_id: str, message: str) -> None:
        log.exception(message)
        self.say(f"dispatcher: ERROR {message}; retrying in {RETRY_AFTER_S:g} s")
        self._retry_at[emergency_id] = time.monotonic() + RETRY_AFTER_S
        self.last_errors[emergency_id] = message

    def health(self, stall_after_s: float = 120.0) -> dict:
        """What the health endpoint shows: failing plans / close-outs still waiting for their retry,
        a main loop that has not gone round for ``stall_after_s``, and the counters."""
        now = time.monotonic()
        failing = [self.last_errors[em] for em, at in self._retry_at.items()
                   if at > now and em in self.last_errors]
        if self.last_loop_at is not None and time.time() - self.last_loop_at > stall_after_s:
            failing.append(f"main loop stalled for {time.time() - self.last_loop_at:.0f} s")
        return {"status": health_status(failing, started=self.last_loop_at is not None), "failing": failing,
                "last_loop_at": self.last_loop_at, **asdict(self.counters)}

    def plan_and_publish(self, conn, em: book.Emergency, period: int, now: datetime,
                         supersede_published_before: datetime | None = None) -> None:
        """Read -> compute -> write: the live state, the pure plan, then store and publish it."""
        state = read_state(conn, em, period, self.cache, now, supersede_published_before)
        planned = plan_period(state, self.cache)
        persist_s, publish_s, published = self.store_and_publish(conn, planned)
        self.counters.plans += 1
        self.report_plan(em, planned, persist_s, publish_s, published)

    def store_and_publish(self, conn, planned: PeriodPlan) -> tuple[float, float, bool]:
        """The one write: the plan and its orders in one transaction, then published through the
        outbox. Returns (persist s, publish s, whether the broker confirmed it already)."""
        s = planned.summary
        t0 = time.perf_counter()
        stored = book.persist_plan(conn, s, planned.orders, planned.supersede, s.created_at)
        persist_s = time.perf_counter() - t0
        if not stored:
            log.info("plan for %s period %d already stored; republishing it", s.emergency_id, s.period)
        if self.die_after_persist == s.period:
            os._exit(137)  # test hook: die like a SIGKILL between storing and publishing
        t1 = time.perf_counter()
        published = False
        for _ in range(2):  # a publication already in flight first, then this plan's
            if not self.publish_pending(conn, wait_s=KAFKA_CALL_MAX_S):
                break
            published = book.plan_published(conn, s.plan_id)
            if published:
                break
        return persist_s, time.perf_counter() - t1, published

    def report_plan(self, em: book.Emergency, planned: PeriodPlan, persist_s: float, publish_s: float,
                    published: bool) -> None:
        """The plan's line (with units) for the operator, its warnings, and its timings for the bench."""
        s = planned.summary
        t = s.timings_s
        self.plan_timings.append({"emergency_id": em.emergency_id, "period": s.period, "status": s.status,
                                  "orders": s.orders, "supply_nodes": s.supply_nodes, **t,
                                  "persist": persist_s, "publish": publish_s})
        self.say(
            f"dispatcher: {em.emergency_id} period {s.period}/{em.periods}: {s.status}"
            f"{'' if s.gap is None else f' (gap {s.gap:.2%})'}, {s.orders} orders, {s.cancelled} superseded, "
            f"{s.supply_nodes} supply nodes; snapshot {t['snapshot']:.2f} s, build {t['build']:.2f} s, "
            f"solve {t['solve']:.2f} s, persist {persist_s:.2f} s, "
            + (f"publish {publish_s:.2f} s" if published else
               f"stored; not published yet (broker not answering), waited {publish_s:.2f} s")
        )
        for w in planned.warnings:
            self.say(f"dispatcher:   warning: {w}")

    # ------------------------------------------------------------------ outputs
    def publish_pending(self, conn, wait_s: float = KAFKA_CALL_MAX_S) -> bool:
        """Publish stored, unpublished plans (orders + summary) and cancel records; then mark them.

        The outbox: one publication at a time is handed to the producer (cancels first, so a
        superseded order's cancel precedes the new plan's orders in each partition) and marked
        published only once the broker confirmed every record. Waits at most ``wait_s`` for the
        confirmation; a publication the broker has not taken yet stays with the producer (which
        retries it, idempotently) and is checked again on the next call, so nothing is handed over
        twice while it waits. Returns True when the publication in flight (if any) was confirmed.
        """

        if self._inflight is None:
            if time.monotonic() < self._publish_retry_at:
                return False
            try:
                self._inflight = self._hand_over(conn)
            except KafkaError as exc:  # no metadata within max_block_ms: the broker is away
                self._publish_failed(f"the broker did not take the records: {exc}")
                return False
            if self._inflight is None:
                return True
        batch = self._inflight
        deadline = time.monotonic() + wait_s
        while not all(f.is_done for f in batch.futures) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not all(f.is_done for f in batch.futures):
            if self._broker_away_since is None:
                self._broker_away_since = batch.handed_at
                self.say(f"dispatcher: the broker has not confirmed {batch.orders} orders and "
                         f"{len(batch.cancel_ids)} cancels yet; planning goes on, they are published "
                         "when it is back")
            return False
        self._inflight = None
        failed = [f.exception for f in batch.futures if f.failed()]
        if failed:
            self._publish_failed(f"{len(failed)} records not taken: {failed[0]}")
            return False
        now = utc_now()
        book.mark_published(conn, None, batch.cancel_ids, now)
        for plan_id in batch.plan_ids:
            book.mark_published(conn, plan_id, [], now)
        self.counters.cancels_published += len(batch.cancel_ids)
        self.counters.orders_published += batch.orders
        if self._broker_away_since is not None:
            self.say(f"dispatcher: broker back: published {batch.orders} orders and {len(batch.cancel_ids)} "
                     f"cancels of {len(batch.plan_ids)} plans held "
                     f"{time.monotonic() - self._broker_away_since:.1f} s")
            self._broker_away_since = None
        return True

    def _hand_over(self, conn) -> _InFlight | None:
        """Send everything stored and unpublished to the producer (not waiting); None if nothing."""
        topic_orders = self.settings.topic(topics.DISPATCH_ORDERS)
        regions = self.owned_regions(conn)
        cancels = book.unpublished_cancels(conn, regions)
        plans = []
        for plan_id in book.unpublished_plans(conn, regions):
            try:
                plans.append((plan_id, *book.plan_records(conn, plan_id)))
            except SchemaError as exc:
                # A row this dispatcher did not write (another tool, a hand edit): never publish a
                # guess, never stop the service over it; it stays unpublished and is named once.
                if plan_id not in self.unreadable_plans:
                    self.unreadable_plans.add(plan_id)
                    self.say(f"dispatcher: warning: stored plan {plan_id} is unreadable and stays "
                             f"unpublished: {exc}")
        if not cancels and not plans:
            return None
        futures = [self.producer.send(topic_orders, key=c.destination.encode(), value=c.to_json()) for c in cancels]
        n_orders = 0
        for _plan_id, summary, orders in plans:
            futures += [self.producer.send(topic_orders, key=o.destination.encode(), value=o.to_json())
                        for o in orders]
            futures.append(self.producer.send(self.settings.topic(topics.PLANS), key=summary.region.encode(),
                                              value=summary.to_json()))
            n_orders += len(orders)
        return _InFlight(futures, [c.order_id for c in cancels], [p[0] for p in plans], n_orders, time.monotonic())

    def _publish_failed(self, message: str) -> None:
        self.counters.publish_failures += 1
        self._publish_retry_at = time.monotonic() + PUBLISH_RETRY_S
        if self._broker_away_since is None:
            self._broker_away_since = time.monotonic()
            self.say(f"dispatcher: publication waits for the broker ({message}); planning goes on, "
                     f"retrying every {PUBLISH_RETRY_S:g} s")


def run_service(settings: Settings, die_after_persist: int | None = None, time_limit_s: float = 30.0,
                gap: float = 1e-3, health_port: int | None = None) -> None:
    d = Dispatcher(settings, die_after_persist=die_after_persist,
                   cache=PlannerCache(time_limit_s=time_limit_s, gap=gap),
                   say=lambda m: print(m, flush=True))
    signal.signal(signal.SIGTERM, d.stop)
    signal.signal(signal.SIGINT, d.stop)
    health = HealthServer(health_port, lambda: d.health(2 * time_limit_s + 60)) if health_port else None
    try:
        d.run()
    finally:
        if health is not None:
            health.close()
    print("dispatcher: stopped", flush=True)
