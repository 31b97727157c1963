"""The stream worker: a Faust service that consumes the readings topic in batches itself, and
holds its database sinks, its in-memory latest state and its counters. :mod:`stream.agents`
declares the timers and the page that call into it.

Why its own consumer rather than a Faust agent: Faust's per-event path (a message object, the
conductor's dispatch, a stream iteration and an ack per record) cost about 200 us of the worker's
~230 us of CPU per record, 16-18x a plain consumer doing the same writes (py-spy and `vreserve bench
stream`, docs/stream.md). So the app runs without Faust's consumer (:class:`stream.app.StreamApp`)
and this service runs one aiokafka consumer in the app's consumer group (the project's client
factory; the same group id, so committed offsets carry over):

poll up to ``batch_max`` records (waiting at most ``batch_within_s`` for more once the first is
there; records Kafka skipped are read back first, in order: stream.repair) -> parse (bad records
go to the stream dead-letter topic with the reason, flushed before anything else) -> fold into
the in-memory state (restart alerts come from there) -> write to PostgreSQL in one transaction
with the partitions' frontier -> commit the batch's offsets (these two in a task of their own
while the next poll is taken; the batch split by partition over the writer lanes, each lane one
transaction at a time, so each partition's commits stay in order: :class:`Lane`). So offsets never run
ahead of the database, and the database writes are idempotent: a replay writes what a first pass
did. A rebalance waits for the batch in hand and the one being written (the revoke callback takes
the batch lock and waits for the write).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import faust
import psycopg
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError

from vreserve import db_access
from vreserve import kafka_clients, topics
from vreserve.decode import key_text, safe_text
from vreserve.gc_tuning import freeze_startup_objects
from vreserve.kafka_access import STREAM
from vreserve.reconcile import Policy as ReconcilePolicy
from vreserve.schemas.alerts import Alert
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.readings import DeadLetter
from vreserve.settings import Settings

from stream import rollups
from stream.latency import LatencyHistogram
from stream.memory import LatestMemory
from stream.options import StreamOptions
from stream.records import ReadingRecord, parse_record
from stream.repair import Source, fetch_range, gap_start
from stream.sink import NewSites, PostgresSink, Rows
from stream.state import FoldCounts, fold_record
from stream.stats import WorkerStats, failing_parts

log = logging.getLogger(__name__)

#: (where it came from, its readings, the alerts folding it raised)
Folded = tuple[Source, ReadingRecord, Sequence[Alert]]
_NO_ALERTS: tuple[Alert, ...] = ()

#: Fetch sizes of the readings consumer: a poll of ``batch_max`` records is usually in hand
#: already (a ReadingBatch of 10 readings is ~0.7 KB; aiokafka's 1 MB per partition would cap a
#: fetch at ~1,400 of them).
FETCH_PARTITION_BYTES = 8 * 1024 * 1024
FETCH_BYTES = 64 * 1024 * 1024


#: A worker skips its periodic checks when any worker of the group ran them within this share of
#: the interval (see stream.rollups.run_checks): the checks run about once an interval, not once
#: per worker and interval.
CHECKED_SHARE = 0.8




@dataclass
class Batch:
    """One poll's records: their offsets are committed only after the database has them."""

    #: the usable records in order, records read back included
    parsed: list[tuple[Source, ReadingRecord]] = field(default_factory=list)
    taken: int = 0  # records taken, usable or not
    frontier: dict[int, int] = field(default_factory=dict)  # partition -> next offset after this batch


@dataclass
class Lane:
    """One database writer: its own connection, and the batch it is writing and committing (one at
    a time). A readings partition always goes to the same lane (``partition % lanes``), and a
    site's records to one partition, so two lanes never touch the same rows (stock_latest, the
    history, stream_sites, stream_offsets, a site's alerts): their transactions never wait for each
    other, and each partition's batches are written and committed in offset order."""

    sink: PostgresSink
    writing: asyncio.Future | None = None
    #: the raw records being written and the taken offsets before their poll (to take them again
    #: if the write fails)
    unwritten: tuple[list, dict[int, int]] | None = None


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, handed to the worker."""

    def __init__(self, worker: "WarehouseWorker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        await self.worker.on_partitions_assigned(assigned)


class WarehouseWorker(faust.Service):
    """Readings topic -> in-memory latest state -> PostgreSQL, plus the periodic checks, the
    alert outbox and the health document."""

    def __init__(self, app: faust.App, settings: Settings, options: StreamOptions) -> None:
        super().__init__()
        self.app, self.settings, self.options = app, settings, options
        self.readings_name = settings.topic(topics.READINGS)
        self.dead_letter_topic = self._raw_topic(topics.STREAM_DEAD_LETTER)
        self.alerts_topic = self._raw_topic(topics.ALERTS)
        self.consumer_id = app.conf.id
        self.memory = LatestMemory()
        self.stats = WorkerStats()
        self.latency = LatencyHistogram()
        self.latency.counts = self.stats.latency_counts
        # One connection each: the batch writers (one per lane), partition loads, the two timers.
        dsn = settings.pg_dsn_for(db_access.STREAM)
        self.lanes = [Lane(PostgresSink(dsn, role="writer")) for _ in range(max(1, options.writers))]
        self.state_sink = PostgresSink(dsn, role="state")
        self.checks_sink, self.outbox_sink = PostgresSink(dsn, role="checks"), PostgresSink(dsn, role="outbox")
        self.folded: dict[int, int] = {}  # partition -> next offset this process has taken
        self.stored: dict[int, int | None] = {}  # partition -> the database's frontier when loaded
        self.pending_hourly: list = [None, None]  # time span written since the last hourly rollup
        self.last_hourly = 0.0
        self.last_reconcile = float("-inf")
        #: reads the state of newly assigned partitions; its retries are not reported as failing
        #: (the batch's own read through state_sink is, once a record waits for it)
        self.preload_sink = PostgresSink(dsn, role="preload")
        self._preload: asyncio.Future | None = None
        self.consumer = None  # the readings consumer (aiokafka), created in the running loop
        self._gc_started: float | None = None
        self._consuming: asyncio.Future | None = None
        self._batch_lock = asyncio.Lock()  # held while a poll's records are taken, and by a rebalance
        self.stale_after_s = options.stale_intervals * settings.reading_interval_s
        self.reconcile_policy = ReconcilePolicy(settle_s=options.settle_s, tolerance_share=options.change_tolerance)

    def _raw_topic(self, name: str) -> faust.TopicT:
        return self.app.topic(self.settings.topic(name), key_serializer="raw", value_serializer="raw",
                              partitions=self.settings.partitions)

    async def on_start(self) -> None:
        """Join the app's consumer group on the readings topic."""
        o = self.options
        self.consumer = kafka_clients.aio_consumer(
            self.settings, STREAM, group_id=self.consumer_id, client_id=f"{self.consumer_id}-readings",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # A crashed worker's partitions go to its replacement after this long.
            session_timeout_ms=int(o.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(1.0, o.session_timeout_s / 4) * 1000),
            max_partition_fetch_bytes=FETCH_PARTITION_BYTES, fetch_max_bytes=FETCH_BYTES)
        self.consumer.subscribe([self.readings_name], listener=_Rebalance(self))
        await self.consumer.start()
        gc.callbacks.append(self._gc_timed)
        # The collector off the hot path (vreserve.gc_tuning). Measured here (``vreserve bench stream
        # --backlog``, the health page's ``gc_s``): with Python's defaults it took 2.9 s of the
        # worker's 4.6 s of CPU over 1,000,000 readings, 18 full passes walking every object of the
        # Faust process, started by one batch's records surviving a few young passes while written.
        freeze_startup_objects()
        self._consuming = asyncio.ensure_future(self._consume())

    async def on_stop(self) -> None:
        """Stop taking records (a batch cut short is neither committed nor lost: its records are
        read again), leave the group, close the connections."""
        if self._gc_timed in gc.callbacks:
            gc.callbacks.remove(self._gc_timed)
        writing = [lane.writing for lane in self.lanes]
        for future in (self._consuming, self._preload, *writing):
            if future is not None:
                future.cancel()
        await asyncio.gather(*(f for f in (self._consuming, *writing) if f is not None), return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()
        for sink in (*(lane.sink for lane in self.lanes), self.state_sink, self.preload_sink, self.checks_sink,
                     self.outbox_sink):
            await sink.close()

    def _gc_timed(self, phase: str, info: dict) -> None:
        """Time spent in the cyclic garbage collector (the health page's ``gc_s``)."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.stats.gc_s += time.perf_counter() - self._gc_started
            self.stats.gc_full += info.get("generation") == 2
            self._gc_started = None

    # --- partitions -------------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked) -> None:
        """A rebalance starts: let the batch in hand finish (written and committed) first. (One
        that fails is not committed: after the rebalance its records are read again from the
        committed offsets.)"""
        async with self._batch_lock:
            for lane in self.lanes:
                try:
                    await self._finish_lane(lane)
                except Exception as exc:  # noqa: BLE001 - its records are read again after the rebalance
                    log.warning("a batch failed before a rebalance (%s): it is read again", safe_text(exc, 300))
                    lane.unwritten = None

    async def on_partitions_assigned(self, assigned) -> None:
        """Drop the state of partitions gone elsewhere; start reading the new ones' from the
        database (in the background: a rebalance must not wait for the database; a batch waits
        for a partition's state before it takes the partition's first record)."""
        mine = {tp.partition for tp in assigned if tp.topic == self.readings_name}
        for p in set(self.memory.owned()) - mine:
            self.memory.drop(p)
            self.folded.pop(p, None)
            self.stored.pop(p, None)
        if self._preload is not None:
            self._preload.cancel()
        self._preload = asyncio.ensure_future(self._load_all(sorted(mine)))

    async def _load_all(self, partitions: list[int]) -> None:
        try:
            for p in partitions:
                await self.ensure_loaded(p, self.preload_sink)
        except asyncio.CancelledError:
            await self.preload_sink.close()  # a read cut short leaves its connection mid-query
            raise
        except Exception as exc:  # noqa: BLE001 - a batch reads a partition itself before its first record
            log.warning("reading the state of newly assigned partitions failed: %s", safe_text(exc, 300))
            await self.preload_sink.close()

    async def ensure_loaded(self, partition: int, sink: PostgresSink | None = None) -> None:
        """The partition's frontier and its sites' latest state, read once per assignment (the
        first of the preload and the batch to read it wins; the other's copy is not newer)."""
        if self.memory.owns(partition):
            return
        stored, rows = await (sink or self.state_sink).partition_state(self.consumer_id, self.readings_name,
                                                                       partition)
        if self.memory.owns(partition):
            return
        self.memory.load(partition, rows)
        self.stored[partition] = stored
        self.stats.partitions_loaded += 1
        self.stats.rows_loaded += len(rows)

    # --- the consumer -----------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Poll, take, write, commit, in order; a batch is written and committed while the next
        poll is taken (by its lanes, in parallel; one write at a time per lane, so each
        partition's commits stay in order). A batch that fails outside
        the record-level handling (bad records are dead-lettered, records the database refuses
        are written one by one) is taken again from its first offsets after a backoff: never
        skipped, and the worker stays up (its health page says what fails)."""
        backoff = 0.5
        while not self.should_stop:
            records: list = []
            folded = dict(self.folded)
            try:
                records = await self._poll()
                if records:
                    async with self._batch_lock:
                        await self._handle(records, folded)
                elif any(lane.writing is not None and lane.writing.done() for lane in self.lanes):
                    async with self._batch_lock:
                        await self._finish_writes()  # a failed write is taken again without waiting for more records
                self.stats.consume_failures, self.stats.consume_last_error, backoff = 0, None, 0.5
            except (asyncio.CancelledError, ConsumerStoppedError):
                return
            except Exception as exc:  # noqa: BLE001 - reported and retried; the records are not lost
                log.exception("a batch of %d readings records failed; taking it again in %.1f s", len(records), backoff)
                self.stats.consume_failures += 1
                self.stats.consume_last_error = f"{type(exc).__name__}: {safe_text(exc, 300)}"
                self._rewind([*await self._unwritten(), (records, folded)])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _unwritten(self) -> list[tuple[list, dict[int, int]]]:
        """After a failure: every lane's write ended (the others' may still succeed); the records
        of those that failed, with the taken offsets before them, oldest first."""
        out = []
        for lane in self.lanes:
            try:
                await self._finish_lane(lane)
            except Exception as exc:  # noqa: BLE001 - taken again with the rest
                log.warning("a lane's batch failed too (%s): it is taken again", safe_text(exc, 300))
            if lane.unwritten is not None:
                out.append(lane.unwritten)
                lane.unwritten = None
        return out

    def _rewind(self, failed: list[tuple[list, dict[int, int]]]) -> None:
        """Back to the first offset of each partition of failed batches (oldest first; the
        partitions still assigned), and to what was taken of each before its oldest batch."""
        owned = self.consumer.assignment()
        first: dict[int, int] = {}
        for records, folded_before in failed:
            for r in records:
                if r.partition not in first:
                    before = folded_before.get(r.partition)
                    if before is None:
                        self.folded.pop(r.partition, None)
                    else:
                        self.folded[r.partition] = before
                first[r.partition] = min(first.get(r.partition, r.offset), r.offset)
        for p, offset in first.items():
            tp = TopicPartition(self.readings_name, p)
            if tp in owned:
                self.consumer.seek(tp, offset)

    async def _poll(self) -> list:
        """Up to ``batch_max`` records; once the first is there, more for at most ``batch_within_s``."""
        o = self.options
        wait_ms = max(1, int(o.batch_within_s * 1000))
        polled = await self.consumer.getmany(timeout_ms=wait_ms, max_records=o.batch_max)
        records = [r for part in polled.values() for r in part]
        deadline = time.monotonic() + o.batch_within_s
        while records and len(records) < o.batch_max and (left := deadline - time.monotonic()) > 0:
            polled = await self.consumer.getmany(timeout_ms=max(1, int(left * 1000)),
                                                 max_records=o.batch_max - len(records))
            records.extend(r for part in polled.values() for r in part)
        return records

    async def _handle(self, records: list, folded_before: dict[int, int]) -> None:
        """One poll's records (of partitions still assigned: a rebalance may have moved some, and
        their new owner reads them from its committed offset) -> batch -> database -> commit.
        Parsed and dead-lettered first: a record counted in ``records`` on the health page has
        its dead letter counted too, and records count even while the database is away."""
        owned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.readings_name}
        name = self.readings_name
        taken = [self._parse(Source(name, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0))
                 for r in records if r.partition in owned]
        if not taken:
            return
        await self._dead_letter_all(taken)
        self.stats.records += len(taken)
        for p in sorted({source.partition for source, _, _ in taken}):
            await self.ensure_loaded(p)
        batch = Batch()
        folded, add = self.folded, self._add  # (a failed batch restores self.folded: _rewind)
        for source, record, _ in taken:
            p, offset = source.partition, source.offset
            if folded.get(p) != offset:  # a partition's first record here, a replay or a skip
                start = gap_start(offset, folded.get(p), self.stored.get(p))
                if start is not None:
                    back = [self._parse(b) for b in await self._read_back(p, start, offset)]
                    await self._dead_letter_all(back)
                    for item in back:
                        add(batch, *item)
            add(batch, source, record)
        work, new_sites = self._fold_batch(batch)  # in offset order, before the next poll's records
        await self._finish_writes()  # the previous batch is written and committed first (every lane)
        n = len(self.lanes)
        for i, lane in enumerate(self.lanes):
            part = self._lane_part(i, n, batch, work, new_sites)
            if part is not None:
                lane.unwritten = ([r for r in records if r.partition % n == i], folded_before)
                lane.writing = asyncio.ensure_future(self._write_and_commit(lane, *part))

    @staticmethod
    def _lane_part(i: int, n: int, batch: Batch, folded: list[Folded],
                   new_sites: NewSites) -> tuple[Batch, list[Folded], NewSites] | None:
        """Lane ``i`` of ``n``'s share of a batch: the records of partitions ``p % n == i``."""
        if n == 1:
            return batch, folded, new_sites
        frontier = {p: nxt for p, nxt in batch.frontier.items() if p % n == i}
        if not frontier:
            return None
        mine = [f for f in folded if f[0].partition % n == i]
        part = Batch(parsed=[(source, record) for source, record, _ in mine], frontier=frontier,
                     taken=round(batch.taken * len(mine) / max(1, len(folded))))
        return part, mine, NewSites(new_sites.topic, [s for s in new_sites.sites if s[0] % n == i])

    async def _finish_writes(self) -> None:
        """Wait for every lane's batch; the first failure is raised (after all have ended)."""
        failure = None
        for lane in self.lanes:
            try:
                await self._finish_lane(lane)
            except Exception as exc:  # noqa: BLE001 - raised once the other lanes have ended too
                failure = failure or exc
        if failure is not None:
            raise failure

    @staticmethod
    async def _finish_lane(lane: Lane) -> None:
        """Wait for the lane's batch being written and committed; its failure is raised here."""
        writing, lane.writing = lane.writing, None
        if writing is not None:
            await writing
            lane.unwritten = None

    @staticmethod
    def _parse(source: Source) -> tuple[Source, ReadingRecord | None, str | None]:
        """The record's readings, or the reason it goes to the dead-letter topic."""
        try:
            return source, parse_record(source.value, source.key), None
        except SchemaError as exc:
            return source, None, safe_text(exc)
        except Exception as exc:  # noqa: BLE001 - parsing is pure: whatever it raised, the record caused
            return source, None, f"the worker could not parse this record: {type(exc).__name__}: {safe_text(exc, 300)}"

    async def _dead_letter_all(self, taken: list[tuple[Source, ReadingRecord | None, str | None]]) -> None:
        """Bad records to the dead-letter topic, flushed: in Kafka before their offsets can move."""
        bad = [(source, reason) for source, record, reason in taken if record is None]
        for source, reason in bad:
            await self.dead_letter(source, reason)
        if bad:
            await self.app.producer.flush()

    def _add(self, batch: Batch, source: Source, record: ReadingRecord | None, _reason: str | None = None) -> None:
        """One taken record into the batch (a bad one only moves the frontier: it is dead-lettered)."""
        if record is not None:
            batch.parsed.append((source, record))
        batch.taken += 1
        nxt = source.offset + 1
        p = source.partition
        if batch.frontier.get(p, 0) < nxt:
            batch.frontier[p] = nxt
        if self.folded.get(p, 0) < nxt:
            self.folded[p] = nxt

    async def _read_back(self, partition: int, start: int, end: int) -> list[Source]:
        """Records ``start <= offset < end`` that the consumer skipped (see stream.repair)."""
        records, gone = await fetch_range(self.settings, self.readings_name, partition, start, end)
        self.stats.offset_gaps += 1
        self.stats.records_read_back += len(records)
        self.stats.offsets_gone += gone
        log.error("the consumer skipped %s[%d] offsets %d..%d: read back %d records%s", self.readings_name,
                  partition, start, end - 1, len(records),
                  f"; {gone} offsets no longer in the topic (retention)" if gone else "")
        return records


    def fold(self, parsed: list[tuple[Source, ReadingRecord]]) -> list[Folded]:
        """Fold a batch's records into the in-memory state, in order (no await: one step)."""
        folded: list[Folded] = []
        counts = FoldCounts()
        raised: list[Alert] = []  # the batch's alerts; each record keeps its own slice (or none)
        site, readings = self.memory.site, 0
        for i, (source, record) in enumerate(parsed):
            before = len(raised)
            fold_record(site(source.partition, record.site_id), record, raised, counts)
            folded.append((source, record, raised[before:] if len(raised) > before else _NO_ALERTS))
            readings += len(record.items)
            if i % 16 == 0:
                self._where_latency_goes(source, record)
        self.stats.readings += readings
        self.stats.newer += counts.newer
        self.stats.replayed += counts.replayed
        self.stats.ignored_older += counts.ignored_older
        return folded

    def _fold_batch(self, batch: Batch) -> tuple[list[Folded], NewSites]:
        """The batch folded into the in-memory state, and the sites it saw first."""
        t = time.perf_counter()
        folded = self.fold(batch.parsed)
        new_sites = NewSites(self.readings_name, self.memory.take_new_sites())
        self.stats.fold_s += time.perf_counter() - t
        return folded, new_sites

    async def _write_and_commit(self, lane: Lane, batch: Batch, folded: list[Folded], new_sites: NewSites) -> None:
        """Write the lane's share of the folded batch to PostgreSQL in one transaction, then commit
        its offsets (a task of its own: the next poll is taken meanwhile)."""
        t = time.perf_counter()
        frontier = {(self.consumer_id, self.readings_name, p): nxt for p, nxt in batch.frontier.items()}
        try:
            rows = Rows.of_records([r for _, r, _ in folded])
            steps = self.stats.write_steps_s
            steps["copy_text"] = steps.get("copy_text", 0.0) + time.perf_counter() - t
            self._written(await lane.sink.write(rows, [a for _, _, al in folded for a in al], frontier, new_sites,
                                                steps))
        except psycopg.Error as exc:
            log.error("database refused a batch of %d records (%s); writing them one by one", len(folded), exc)
            await lane.sink.close()
            await self._write_one_by_one(lane.sink, folded, frontier, new_sites)
        committed = time.time()
        add = self.latency.add
        for _, record, _ in folded:
            add((committed - record.ts.timestamp()) * 1000.0, len(record.items))
        k = time.perf_counter()
        await self._commit(batch.frontier)
        steps = self.stats.write_steps_s
        steps["kafka_commit"] = steps.get("kafka_commit", 0.0) + time.perf_counter() - k
        self.stats.db_write_s += time.perf_counter() - t
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        self.stats.last_batch_records = batch.taken

    async def _commit(self, frontier: dict[int, int]) -> None:
        """Commit the offsets of a batch the database holds. Refused because a rebalance moved the
        partitions, it is harmless: their new owner reads from the last commit, and the writes are
        idempotent."""
        try:
            await self.consumer.commit({TopicPartition(self.readings_name, p): nxt for p, nxt in frontier.items()})
        except KafkaError as exc:
            self.stats.commit_failures += 1
            log.warning("committing offsets of %s failed (%s): the next owner re-reads them", self.readings_name,
                        safe_text(exc, 300))

    async def _write_one_by_one(self, sink: PostgresSink, folded: list[Folded], frontier: dict,
                                new_sites: NewSites) -> None:
        """After the database refused a whole batch: write each record alone, dead-letter what
        is still refused, so one poisoned record never blocks the partition; then the frontier."""
        for source, record, alerts in folded:
            try:
                self._written(await sink.write(Rows.of_records([record]), alerts))
            except psycopg.Error as exc:
                await sink.close()
                await self.dead_letter(source, f"database refused the record: {exc}".strip()[:4000])
        await sink.write(Rows.of_records([]), [], frontier, new_sites)

    def _written(self, written) -> None:
        self.stats.history_rows += written.history_rows
        self.stats.latest_rows += written.latest_rows
        self.stats.jump_alerts += written.alerts_new
        if written.ts_min is not None:
            lo, hi = self.pending_hourly
            self.pending_hourly[0] = written.ts_min if lo is None else min(lo, written.ts_min)
            self.pending_hourly[1] = written.ts_max if hi is None else max(hi, written.ts_max)

    async def dead_letter(self, source: Source, reason: str) -> None:
        letter = DeadLetter(
            source=f"kafka:{source.topic}", reason=reason,
            payload=source.value if isinstance(source.value, (bytes, bytearray)) else b"",
            at=utc_now(),
            context={"partition": source.partition, "offset": source.offset,
                     "key": key_text(source.key or b"")},
        )
        await self.dead_letter_topic.send(key=source.key, value=letter.to_json())
        self.stats.dead_letters += 1
        log.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition, source.offset, reason)

    def _where_latency_goes(self, source: Source, record: ReadingRecord) -> None:
        """Sampled: sensor ts -> Kafka record ts (bridge) -> folded here (moving averages)."""
        if not source.timestamp:
            return
        now, a = time.time(), 0.01
        s2k = 1000.0 * (source.timestamp - record.ts.timestamp())
        k2f = 1000.0 * (now - source.timestamp)
        st = self.stats
        st.last_sensor_to_kafka_ms = round(s2k if st.last_sensor_to_kafka_ms is None
                                           else (1 - a) * st.last_sensor_to_kafka_ms + a * s2k, 1)
        st.last_kafka_to_fold_ms = round(k2f if st.last_kafka_to_fold_ms is None
                                         else (1 - a) * st.last_kafka_to_fold_ms + a * k2f, 1)

    # --- timers and page --------------------------------------------------------------------------

    async def run_checks(self) -> None:
        """Aggregates, stale / low-stock alerts, reconciliation, and (plain PostgreSQL) the hourly
        rollup, which recomputes whole touched hours: at most every ``hourly_interval_s``."""
        st, o = self.stats, self.options
        now = time.monotonic()
        due = now - self.last_hourly >= o.hourly_interval_s
        hourly = tuple(self.pending_hourly) if self.pending_hourly[0] is not None and due else None
        reconciling = now - self.last_reconcile >= o.reconcile_every_s()
        try:
            conn = await self.checks_sink.connection()
            result = await rollups.run_checks(
                conn, self.stale_after_s, o.stale_intervals, self.settings.reading_interval_s, hourly,
                self.reconcile_policy if reconciling else None,
                # a worker with hourly buckets of its own to refresh runs them whoever ran last
                unless_checked_within_s=None if hourly is not None else CHECKED_SHARE * o.aggregate_interval_s)
        except psycopg.Error as exc:
            log.warning("periodic checks failed: %s", exc)
            st.checks_failures += 1
            st.checks_failing_since = st.checks_failing_since or time.time()
            st.checks_last_error = safe_text(exc, 500)
            await self.checks_sink.close()
            return
        st.checks_failures, st.checks_failing_since, st.checks_last_error = 0, None, None
        if result.ran and reconciling:
            self.last_reconcile = now
        if result.ran and hourly is not None:
            self.last_hourly = time.monotonic()
            if tuple(self.pending_hourly) == hourly:
                self.pending_hourly[0] = self.pending_hourly[1] = None
        st.last_checks_at = time.time()
        st.last_checks = asdict(result)
        for step, seconds in result.step_s.items():
            st.checks_s[step] = st.checks_s.get(step, 0.0) + seconds

    async def publish_outbox(self) -> None:
        """Alerts stored in the database -> the alerts topic (published_at set once Kafka has them)."""
        try:
            conn = await self.outbox_sink.connection()
            self.stats.alerts_published += await rollups.publish_outbox(conn, self._send_alerts)
            self.stats.outbox_failures, self.stats.outbox_last_error = 0, None
        except psycopg.Error as exc:
            log.warning("alert outbox failed: %s", exc)
            self.stats.outbox_failures += 1
            self.stats.outbox_last_error = safe_text(exc, 500)
            await self.outbox_sink.close()

    async def _send_alerts(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            await self.alerts_topic.send(key=alert.key.encode(), value=alert.to_json())
        await self.app.producer.flush()

    def health(self) -> dict:
        """The health document: status, what is failing, and the counters."""
        alive = self.consumer is not None
        writers = [lane.sink for lane in self.lanes]
        failing = next((s.failing_since for s in (*writers, self.state_sink) if s.failing_since), None)
        problems = failing_parts(self.stats, failing, self.options.aggregate_interval_s)
        return {
            "status": "starting" if not alive else ("degraded" if problems else "ok"),
            "failing": problems,
            "database_failing_since": failing,
            "database_last_error": next((s.last_error for s in (*writers, self.state_sink) if s.last_error), None),
            "app_id": self.consumer_id,
            "table_keys": self.memory.keys(),
            "table_sites": self.memory.sites(),
            "assigned_partitions": sorted(tp.partition for tp in self.consumer.assignment()) if alive else [],
            **{k: v for k, v in asdict(self.stats).items() if k != "errors"},
        }
