"""The stream worker: a Faust service holding its open batch, its database sinks, its in-memory
latest state and its counters. :mod:`stream.agents` declares the agent, timers and page that
call into it.

The agent only takes records into the open batch (and reads back records Faust skipped, in
order, before the record that revealed the skip). A writer task closes the batch when it is full
or ``batch_within_s`` old AND the previous batch is written, so while the database works the
next batch fills. Per batch, all at once: parse (bad records go to the stream dead-letter topic
with the reason), fold into the in-memory state (restart alerts come from there), write to
PostgreSQL in one transaction with the partitions' frontier, then ack the batch's events. Faust
commits only acked offsets, after flushing its producer (dead letters), so offsets never run
ahead of the database; the database writes are idempotent, so a replay writes what a first pass
did.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field

import faust
import psycopg

from vreserve import topics
from vreserve.decode import key_text, safe_text
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
Folded = tuple[Source, ReadingRecord, list[Alert]]


@dataclass
class OpenBatch:
    """Records taken but not yet written: their events are acked only after the database has them."""

    events: list = field(default_factory=list)
    #: the usable records in order, records read back included (bad ones are dead-lettered at once)
    parsed: list[tuple[Source, ReadingRecord]] = field(default_factory=list)
    taken: int = 0  # records taken, usable or not
    frontier: dict[int, int] = field(default_factory=dict)  # partition -> next offset after this batch
    started: float = field(default_factory=time.monotonic)


class WarehouseWorker(faust.Service):
    """Readings topic -> in-memory latest state -> PostgreSQL, plus the periodic checks, the
    alert outbox and the health document."""

    def __init__(self, app: faust.App, settings: Settings, options: StreamOptions) -> None:
        super().__init__()
        self.app, self.settings, self.options = app, settings, options
        self.readings_name = settings.topic(topics.READINGS)
        self.readings_topic = self._raw_topic(topics.READINGS)
        self.dead_letter_topic = self._raw_topic(topics.STREAM_DEAD_LETTER)
        self.alerts_topic = self._raw_topic(topics.ALERTS)
        self.consumer_id = app.conf.id
        self.memory = LatestMemory()
        self.stats = WorkerStats()
        self.latency = LatencyHistogram()
        self.latency.counts = self.stats.latency_counts
        # One connection each: the batch writer, partition loads, the two timers.
        self.sink, self.state_sink = PostgresSink(settings.pg_dsn), PostgresSink(settings.pg_dsn)
        self.checks_sink, self.outbox_sink = PostgresSink(settings.pg_dsn), PostgresSink(settings.pg_dsn)
        self.open = OpenBatch()
        self.folded: dict[int, int] = {}  # partition -> next offset this process has taken
        self.stored: dict[int, int | None] = {}  # partition -> the database's frontier when loaded
        self.pending_hourly: list = [None, None]  # time span written since the last hourly rollup
        self.last_hourly = 0.0
        #: reads the state of newly assigned partitions; its retries are not reported as failing
        #: (the agent's own read through state_sink is, once a record waits for it)
        self.preload_sink = PostgresSink(settings.pg_dsn)
        self._preload: asyncio.Future | None = None
        self._closed = asyncio.Event()
        self.stale_after_s = options.stale_intervals * settings.reading_interval_s
        self.reconcile_policy = ReconcilePolicy(settle_s=options.settle_s, tolerance_share=options.change_tolerance)
        app.on_partitions_assigned.connect(self.on_partitions_assigned)

    def _raw_topic(self, name: str) -> faust.TopicT:
        return self.app.topic(self.settings.topic(name), key_serializer="raw", value_serializer="raw",
                              partitions=self.settings.partitions)

    async def on_stop(self) -> None:
        if self._preload is not None:
            self._preload.cancel()
        for sink in (self.sink, self.state_sink, self.preload_sink, self.checks_sink, self.outbox_sink):
            await sink.close()

    # --- partitions -------------------------------------------------------------------------------

    async def on_partitions_assigned(self, sender, assigned, **kwargs) -> None:
        """Drop the state of partitions gone elsewhere; start reading the new ones' from the
        database (in the background: a rebalance must not wait for the database; the agent
        waits for a partition's state before it takes the partition's first record)."""
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
        except Exception as exc:  # noqa: BLE001 - the agent reads a partition itself before its first record
            log.warning("reading the state of newly assigned partitions failed: %s", safe_text(exc, 300))
            await self.preload_sink.close()

    async def ensure_loaded(self, partition: int, sink: PostgresSink | None = None) -> None:
        """The partition's frontier and its sites' latest state, read once per assignment (the
        first of the preload and the agent to read it wins; the other's copy is not newer)."""
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

    # --- the agent's side -------------------------------------------------------------------------

    async def consume(self, stream) -> None:
        """The agent's body: take every event into the open batch; the writer task does the rest."""
        acks = stream.noack()
        self.open = OpenBatch()
        writer = asyncio.ensure_future(self._writer_loop(acks))
        try:
            async for event in acks.events():
                await self._room_in_batch(writer)
                await self._take(event)
        finally:
            writer.cancel()

    async def _room_in_batch(self, writer: asyncio.Future) -> None:
        """Back-pressure: wait while the open batch is full (and fail if the writer died)."""
        while True:
            if writer.done():
                writer.result()  # its exception, if it failed
                raise RuntimeError("database writer stopped")
            if self.open.taken < self.options.batch_max:
                return
            self._closed.clear()
            await asyncio.wait({asyncio.ensure_future(self._closed.wait()), writer},
                               return_when=asyncio.FIRST_COMPLETED)

    async def _take(self, event) -> None:
        self.stats.records += 1
        source = Source.of_event(event)
        p = source.partition
        await self.ensure_loaded(p)
        start = gap_start(source.offset, self.folded.get(p), self.stored.get(p))
        taken = await self._read_back(p, start, source.offset) if start is not None else []
        taken.append(source)
        parsed = [(src, record) for src in taken if (record := await self._parse_or_dead_letter(src)) is not None]
        batch = self.open  # no await from here until the record is in it
        if not batch.taken:
            batch.started = time.monotonic()
        batch.parsed.extend(parsed)
        batch.taken += len(taken)
        batch.events.append(event)
        nxt = source.offset + 1
        batch.frontier[p] = max(batch.frontier.get(p, 0), nxt)
        self.folded[p] = max(self.folded.get(p, 0), nxt)

    async def _parse_or_dead_letter(self, source: Source) -> ReadingRecord | None:
        """The record's readings, or None once it is on the dead-letter topic (sent BEFORE the
        record joins a batch, so its offset cannot be committed ahead of the dead letter)."""
        try:
            return parse_record(source.value, source.key)
        except SchemaError as exc:
            reason = safe_text(exc)
        except Exception as exc:  # noqa: BLE001 - parsing is pure: whatever it raised, the record caused
            reason = f"the worker could not parse this record: {type(exc).__name__}: {safe_text(exc, 300)}"
        await self.dead_letter(source, reason)
        return None

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

    # --- the writer's side ------------------------------------------------------------------------

    async def _writer_loop(self, acks) -> None:
        """Close the open batch when full or old enough, write it, ack it; one batch at a time,
        in order, so committed offsets never pass what is in the database."""
        while True:
            batch = self.open
            if not batch.taken:
                await asyncio.sleep(self.options.batch_within_s)
                continue
            age = time.monotonic() - batch.started
            if batch.taken < self.options.batch_max and age < self.options.batch_within_s:
                await asyncio.sleep(self.options.batch_within_s - age)
                continue
            self.open = OpenBatch()
            self._closed.set()
            await self._write_and_ack(acks, batch)

    def fold(self, parsed: list[tuple[Source, ReadingRecord]]) -> list[Folded]:
        """Fold a batch's records into the in-memory state, in order (no await: one step)."""
        folded: list[Folded] = []
        counts = FoldCounts()
        for i, (source, record) in enumerate(parsed):
            alerts: list[Alert] = []
            fold_record(self.memory.site(source.partition, record.site_id), record, alerts, counts)
            folded.append((source, record, alerts))
            self.stats.readings += len(record.items)
            if i % 16 == 0:
                self._where_latency_goes(source, record)
        self.stats.newer += counts.newer
        self.stats.replayed += counts.replayed
        self.stats.ignored_older += counts.ignored_older
        return folded

    async def _write_and_ack(self, acks, batch: OpenBatch) -> None:
        """Fold, write the batch to PostgreSQL in one transaction, then ack its events."""
        t = time.perf_counter()
        folded = self.fold(batch.parsed)
        new_sites = NewSites(self.readings_name, self.memory.take_new_sites())
        self.stats.fold_s += time.perf_counter() - t
        t = time.perf_counter()
        frontier = {(self.consumer_id, self.readings_name, p): nxt for p, nxt in batch.frontier.items()}
        try:
            self._written(await self.sink.write(Rows.of_records([r for _, r, _ in folded]),
                                                [a for _, _, al in folded for a in al], frontier, new_sites))
        except psycopg.Error as exc:
            log.error("database refused a batch of %d records (%s); writing them one by one", len(folded), exc)
            await self.sink.close()
            await self._write_one_by_one(folded, frontier, new_sites)
        committed = time.time()
        for _, record, _ in folded:
            self.latency.add((committed - record.ts.timestamp()) * 1000.0, len(record.items))
        for event in batch.events:
            await acks.ack(event)
        self.stats.db_write_s += time.perf_counter() - t
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        self.stats.last_batch_records = batch.taken

    async def _write_one_by_one(self, folded: list[Folded], frontier: dict, new_sites: NewSites) -> None:
        """After the database refused a whole batch: write each record alone, dead-letter what
        is still refused, so one poisoned record never blocks the partition; then the frontier."""
        for source, record, alerts in folded:
            try:
                self._written(await self.sink.write(Rows.of_records([record]), alerts))
            except psycopg.Error as exc:
                await self.sink.close()
                await self.dead_letter(source, f"database refused the record: {exc}".strip()[:4000])
        await self.sink.write(Rows.of_records([]), [], frontier, new_sites)

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
        st = self.stats
        due = time.monotonic() - self.last_hourly >= self.options.hourly_interval_s
        hourly = tuple(self.pending_hourly) if self.pending_hourly[0] is not None and due else None
        try:
            conn = await self.checks_sink.connection()
            result = await rollups.run_checks(conn, self.stale_after_s, self.options.stale_intervals,
                                              self.settings.reading_interval_s, hourly, self.reconcile_policy)
        except psycopg.Error as exc:
            log.warning("periodic checks failed: %s", exc)
            st.checks_failures += 1
            st.checks_failing_since = st.checks_failing_since or time.time()
            st.checks_last_error = safe_text(exc, 500)
            await self.checks_sink.close()
            return
        st.checks_failures, st.checks_failing_since, st.checks_last_error = 0, None, None
        if result.ran and hourly is not None:
            self.last_hourly = time.monotonic()
            if tuple(self.pending_hourly) == hourly:
                self.pending_hourly[0] = self.pending_hourly[1] = None
        st.last_checks_at = time.time()
        st.last_checks = asdict(result)

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
        alive = self.app.consumer is not None
        failing = self.sink.failing_since or self.state_sink.failing_since
        problems = failing_parts(self.stats, failing, self.options.aggregate_interval_s)
        return {
            "status": "starting" if not alive else ("degraded" if problems else "ok"),
            "failing": problems,
            "database_failing_since": failing,
            "database_last_error": self.sink.last_error or self.state_sink.last_error,
            "app_id": self.consumer_id,
            "table_keys": self.memory.keys(),
            "table_sites": self.memory.sites(),
            "assigned_partitions": sorted(tp.partition for tp in self.app.consumer.assignment()) if alive else [],
            **{k: v for k, v in asdict(self.stats).items() if k != "errors"},
        }
