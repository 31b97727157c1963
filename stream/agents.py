"""The worker's agent, timers and health page, wired onto a Faust app.

The agent takes readings records in batches: for each record it parses (bad ones go to the
stream dead-letter topic with the reason), moves the ``latest`` table forward (jump alerts come
from there), then writes the whole batch to PostgreSQL in one transaction. Faust acknowledges the
batch's events only after the loop body returns, and commits offsets only after flushing its
producer (changelog, dead letters), so offsets never run ahead of the database. Each batch also
moves its partitions' frontier in the database; a record beyond the frontier means Faust skipped
records, and the worker reads them back itself (:mod:`stream.repair`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Sequence

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
from stream.options import StreamOptions
from stream.records import StockReading, parse_batch
from stream.repair import Source, fetch_range, gap_start
from stream.sink import PostgresSink
from stream.state import Outcome, apply_reading
from stream.tables import LatestWriter, latest_table

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Counters the health endpoint shows (since this process started)."""

    started_at: float = field(default_factory=time.time)
    records: int = 0
    readings: int = 0
    dead_letters: int = 0
    newer: int = 0
    ignored_older: int = 0
    replayed: int = 0
    history_rows: int = 0
    latest_rows: int = 0
    jump_alerts: int = 0
    batches: int = 0
    #: Ranges of offsets the consumer skipped, the records read back for them, and offsets in such
    #: ranges that held no record any more (retention). Zero unless Faust skipped records.
    offset_gaps: int = 0
    records_read_back: int = 0
    offsets_gone: int = 0
    #: Seconds spent parsing + folding, writing to the database, handing changelog to the producer.
    fold_s: float = 0.0
    db_write_s: float = 0.0
    changelog_s: float = 0.0
    last_batch_at: float | None = None
    last_checks_at: float | None = None
    last_checks: dict | None = None
    #: Periodic checks / alert outbox failing in a row (0 when the last run worked), since when, why.
    checks_failures: int = 0
    checks_failing_since: float | None = None
    checks_last_error: str | None = None
    outbox_failures: int = 0
    outbox_last_error: str | None = None
    alerts_published: int = 0
    #: Of the last batch: records, mean ms from sensor ts to the Kafka record timestamp (the
    #: bridge's produce time) and from that to the start of folding here (where latency goes).
    last_batch_records: int = 0
    last_sensor_to_kafka_ms: float | None = None
    last_kafka_to_fold_ms: float | None = None
    #: Sensor ts -> committed to PostgreSQL, per reading (see stream.latency).
    latency_counts: list = field(default_factory=lambda: LatencyHistogram().counts)
    errors: list = field(default_factory=list)


@dataclass
class _Batch:
    """Records folded but not yet written: acked only after the database has them."""

    events: list = field(default_factory=list)
    parsed: list = field(default_factory=list)   # (Source, readings, alerts)
    changelog: list = field(default_factory=list)
    frontier: dict = field(default_factory=dict)  # partition -> next offset after this batch
    started: float = field(default_factory=time.monotonic)


@dataclass
class Wiring:
    app: faust.App
    stats: WorkerStats
    latest: faust.Table
    sink: PostgresSink




def failing_parts(stats: WorkerStats, db_failing_since: float | None, checks_interval_s: float,
                  now: float | None = None) -> list[str]:
    """What the health page says is failing; empty when all is well.

    The periodic checks count as failing when their last run failed, or when none has succeeded
    within three intervals of the start (or of the last success)."""
    now = time.time() if now is None else now
    problems = []
    if db_failing_since:
        problems.append("database writes")
    last_ok = stats.last_checks_at or stats.started_at
    if stats.checks_failures or now - last_ok > 3 * checks_interval_s + 5:
        problems.append(f"periodic checks ({stats.checks_failures} failure(s) in a row"
                        f"{': ' + stats.checks_last_error if stats.checks_last_error else ''})")
    if stats.outbox_failures:
        problems.append(f"alert outbox ({stats.outbox_failures} failure(s) in a row: {stats.outbox_last_error})")
    return problems


def wire(app: faust.App, settings: Settings, options: StreamOptions) -> Wiring:
    readings_topic = app.topic(settings.topic(topics.READINGS), key_serializer="raw",
                               value_serializer="raw", partitions=settings.partitions)
    dead_letter_topic = app.topic(settings.topic(topics.STREAM_DEAD_LETTER), key_serializer="raw",
                                  value_serializer="raw", partitions=settings.partitions)
    alerts_topic = app.topic(settings.topic(topics.ALERTS), key_serializer="raw",
                             value_serializer="raw", partitions=settings.partitions)
    latest = latest_table(app, settings)
    writer = LatestWriter(app, latest)
    sink = PostgresSink(settings.pg_dsn)
    checks_sink = PostgresSink(settings.pg_dsn)   # each timer has its own connection
    frontier_sink = PostgresSink(settings.pg_dsn)  # reads stored frontiers, outside the writer's transactions
    consumer_id = app.conf.id
    readings_name = settings.topic(topics.READINGS)
    folded: dict[int, int] = {}  # partition -> next offset this process has taken into a batch
    outbox_sink = PostgresSink(settings.pg_dsn)
    stats = WorkerStats()
    latency = LatencyHistogram()
    latency.counts = stats.latency_counts
    pending_hourly: list[datetime | None] = [None, None]
    # The batch records are folded into; the writer task swaps in a new one when it closes it, and
    # records read back (read_back_if_skipped) join it too.
    state: dict[str, _Batch] = {"open": _Batch()}
    last_hourly = [0.0]
    stale_after_s = options.stale_intervals * settings.reading_interval_s
    reconcile_policy = ReconcilePolicy(settle_s=options.settle_s, tolerance_share=options.change_tolerance)

    async def dead_letter(source: Source, reason: str) -> None:
        letter = DeadLetter(
            source=f"kafka:{source.topic}", reason=reason,
            payload=source.value if isinstance(source.value, (bytes, bytearray)) else b"",
            at=utc_now(),
            context={"partition": source.partition, "offset": source.offset,
                     "key": key_text(source.key or b"")},
        )
        await dead_letter_topic.send(key=source.key, value=letter.to_json())
        stats.dead_letters += 1
        log.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition, source.offset, reason)

    async def parse_or_dead_letter(source: Source) -> list[StockReading] | None:
        """The record's readings, or None once it is on the dead-letter topic (sent BEFORE the
        record joins a batch, so its offset cannot be committed ahead of the dead letter)."""
        try:
            return parse_batch(source.value, source.key)
        except SchemaError as exc:
            await dead_letter(source, safe_text(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - parsing is pure: whatever it raised, the record caused
            await dead_letter(source, f"the worker could not parse this record: {type(exc).__name__}: "
                                      f"{safe_text(exc, 300)}")
            return None

    def add(batch: "_Batch", source: Source, readings: list[StockReading] | None) -> None:
        """Fold a record into the table and the batch (no await: it lands in the batch it was
        folded for, whose changelog is taken when the batch closes)."""
        if readings is not None:
            alerts: list[Alert] = []
            fold(source.partition, readings, alerts)
            stats.readings += len(readings)
            batch.parsed.append((source, readings, alerts))
        p, nxt = source.partition, source.offset + 1
        batch.frontier[p] = max(batch.frontier.get(p, 0), nxt)
        folded[p] = max(folded.get(p, 0), nxt)

    async def read_back_if_skipped(source: Source) -> None:
        """A record beyond the partition's frontier: read the skipped ones first, in order."""
        p = source.partition
        done = folded.get(p)
        if done is not None and source.offset <= done:
            return  # the next record, or a replay
        start = gap_start(source.offset, done, await frontier_sink.stored_frontier(consumer_id, readings_name, p))
        if start is None:
            return
        records, gone = await fetch_range(settings, readings_name, p, start, source.offset)
        stats.offset_gaps += 1
        stats.records_read_back += len(records)
        stats.offsets_gone += gone
        log.error("the consumer skipped %s[%d] offsets %d..%d: read back %d records%s", readings_name, p,
                  start, source.offset - 1, len(records),
                  f"; {gone} offsets no longer in the topic (retention)" if gone else "")
        for record in records:
            readings = await parse_or_dead_letter(record)
            add(state["open"], record, readings)

    def fold(partition: int, readings: Sequence[StockReading], alerts: list[Alert]) -> None:
        for reading in readings:
            applied = apply_reading(writer.get(reading.site_id, reading.material_id), reading)
            if applied.outcome in (Outcome.NEW, Outcome.NEWER):
                writer.put(reading.site_id, reading.material_id, applied.held, partition)
                stats.newer += 1
            elif applied.outcome is Outcome.REPLAY:
                stats.replayed += 1
            else:
                stats.ignored_older += 1
            if applied.jump is not None:
                alerts.append(applied.jump)
            if applied.restart is not None:
                alerts.append(applied.restart)

    async def write_one_by_one(parsed: list[tuple[Source, list[StockReading], list[Alert]]],
                               frontier: dict) -> None:
        """After the database refused a whole batch: write each record alone, dead-letter what
        is still refused, so one poisoned record never blocks the partition; then the frontier."""
        for source, readings, alerts in parsed:
            try:
                await record_written(await sink.write(readings, alerts))
            except psycopg.Error as exc:
                await sink.close()
                await dead_letter(source, f"database refused the record: {exc}".strip()[:4000])
        await sink.write([], [], frontier)

    async def record_written(written) -> None:
        stats.history_rows += written.history_rows
        stats.latest_rows += written.latest_rows
        stats.jump_alerts += written.alerts_new
        if written.ts_min is not None:
            lo, hi = pending_hourly
            pending_hourly[0] = written.ts_min if lo is None else min(lo, written.ts_min)
            pending_hourly[1] = written.ts_max if hi is None else max(hi, written.ts_max)

    async def write_and_ack(acks, batch: "_Batch") -> None:
        """Changelog to the producer, batch to PostgreSQL, then ack its events (only then)."""
        t = time.perf_counter()
        await writer.send(batch.changelog)
        stats.changelog_s += time.perf_counter() - t
        t = time.perf_counter()
        parsed = batch.parsed
        all_readings = [r for _, rs, _ in parsed for r in rs]
        all_alerts = [a for _, _, al in parsed for a in al]
        frontier = {(consumer_id, readings_name, p): nxt for p, nxt in batch.frontier.items()}
        if parsed or frontier:
            try:
                await record_written(await sink.write(all_readings, all_alerts, frontier))
            except psycopg.Error as exc:
                log.error("database refused a batch of %d records (%s); writing them one by one",
                          len(parsed), exc)
                await sink.close()
                await write_one_by_one(parsed, frontier)
        committed = time.time()
        for _, readings, _ in parsed:
            if readings:
                latency.add((committed - readings[0].ts.timestamp()) * 1000.0, len(readings))
        for event in batch.events:
            await acks.ack(event)
        stats.db_write_s += time.perf_counter() - t
        stats.batches += 1
        stats.last_batch_at = time.time()
        stats.last_batch_records = len(batch.events)

    def where_latency_goes(event, readings) -> None:
        """Sampled per record: sensor ts -> Kafka record ts (bridge) -> folded here."""
        kafka_ts = event.message.timestamp
        if kafka_ts and readings:
            now = time.time()
            a = 0.01  # exponential moving averages
            s2k = 1000.0 * (kafka_ts - readings[0].ts.timestamp())
            k2f = 1000.0 * (now - kafka_ts)
            stats.last_sensor_to_kafka_ms = round(s2k if stats.last_sensor_to_kafka_ms is None
                                                  else (1 - a) * stats.last_sensor_to_kafka_ms + a * s2k, 1)
            stats.last_kafka_to_fold_ms = round(k2f if stats.last_kafka_to_fold_ms is None
                                                else (1 - a) * stats.last_kafka_to_fold_ms + a * k2f, 1)

    @app.agent(readings_topic, concurrency=1, name="warehouse")
    async def warehouse(stream):
        # Records are parsed and folded one by one into the open batch. A writer task closes the
        # open batch when it is full or batch_within_s old AND the previous batch is written:
        # so while the database works, the next batch keeps filling (batches grow up to
        # batch_max when the database is the slower side). Batches are written, then acked, one
        # at a time in order, so committed offsets never pass what is in the database.
        acks = stream.noack()
        state["open"] = _Batch()
        closed = asyncio.Event()

        def writer_must_be_running() -> None:
            if writer_task.done():
                writer_task.result()  # its exception, if it failed
                raise RuntimeError("database writer stopped")

        async def writer_loop() -> None:
            while True:
                batch = state["open"]
                if not batch.events:
                    await asyncio.sleep(options.batch_within_s)
                    continue
                age = time.monotonic() - batch.started
                if len(batch.events) < options.batch_max and age < options.batch_within_s:
                    await asyncio.sleep(options.batch_within_s - age)
                    continue
                state["open"] = _Batch()
                batch.changelog = writer.take()  # no await since the swap: exactly this batch's
                closed.set()
                await write_and_ack(acks, batch)

        writer_task = asyncio.ensure_future(writer_loop())
        try:
            async for event in acks.events():
                writer_must_be_running()
                batch = state["open"]
                while len(batch.events) >= options.batch_max:  # back-pressure: wait for the writer
                    closed.clear()
                    await asyncio.wait({asyncio.ensure_future(closed.wait()), writer_task},
                                       return_when=asyncio.FIRST_COMPLETED)
                    writer_must_be_running()
                    batch = state["open"]
                t0 = time.perf_counter()
                stats.records += 1
                source = Source.of_event(event)
                await read_back_if_skipped(source)
                readings = await parse_or_dead_letter(source)
                batch = state["open"]  # no await from here until the record is in it
                if not batch.events:
                    batch.started = time.monotonic()
                batch.events.append(event)
                add(batch, source, readings)
                if readings is not None and stats.records % 16 == 0:
                    where_latency_goes(event, readings)
                stats.fold_s += time.perf_counter() - t0
        finally:
            writer_task.cancel()

    @app.timer(options.aggregate_interval_s, name="stream.checks")
    async def checks():
        # The plain-PostgreSQL hourly rollup recomputes whole touched hours: once a minute is
        # plenty (TimescaleDB keeps its continuous aggregate itself; there the call is a no-op).
        due = time.monotonic() - last_hourly[0] >= options.hourly_interval_s
        hourly = tuple(pending_hourly) if pending_hourly[0] is not None and due else None
        try:
            conn = await checks_sink.connection()
            result = await rollups.run_checks(conn, stale_after_s, options.stale_intervals,
                                              settings.reading_interval_s, hourly, reconcile_policy)
        except psycopg.Error as exc:
            log.warning("periodic checks failed: %s", exc)
            stats.checks_failures += 1
            stats.checks_failing_since = stats.checks_failing_since or time.time()
            stats.checks_last_error = safe_text(exc, 500)
            await checks_sink.close()
            return
        stats.checks_failures, stats.checks_failing_since, stats.checks_last_error = 0, None, None
        if result.ran and hourly is not None:
            last_hourly[0] = time.monotonic()
            if tuple(pending_hourly) == hourly:
                pending_hourly[0] = pending_hourly[1] = None
        stats.last_checks_at = time.time()
        stats.last_checks = asdict(result)

    async def send_alerts(alerts: list[Alert]) -> None:
        for alert in alerts:
            await alerts_topic.send(key=alert.key.encode(), value=alert.to_json())
        await app.producer.flush()

    @app.timer(options.outbox_interval_s, name="stream.outbox")
    async def outbox():
        try:
            conn = await outbox_sink.connection()
            stats.alerts_published += await rollups.publish_outbox(conn, send_alerts)
            stats.outbox_failures, stats.outbox_last_error = 0, None
        except psycopg.Error as exc:
            log.warning("alert outbox failed: %s", exc)
            stats.outbox_failures += 1
            stats.outbox_last_error = safe_text(exc, 500)
            await outbox_sink.close()

    @app.page("/health")
    async def health(web, request):
        alive = app.consumer is not None
        failing = sink.failing_since or frontier_sink.failing_since
        problems = failing_parts(stats, failing, options.aggregate_interval_s)
        status = "starting" if not alive else ("degraded" if problems else "ok")
        body = {
            "status": status,
            "failing": problems,
            "database_failing_since": failing,
            "database_last_error": sink.last_error or frontier_sink.last_error,
            "app_id": app.conf.id,
            "table_keys": writer.keys(),
            "table_sites": writer.sites(),
            "assigned_partitions": sorted(tp.partition for tp in app.consumer.assignment())
            if alive else [],
            **{k: v for k, v in asdict(stats).items() if k != "errors"},
        }
        return web.json(body)

    return Wiring(app, stats, latest, sink)
