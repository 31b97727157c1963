"""What the stream worker counts, and what its health page calls failing."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from stream.latency import LatencyHistogram


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
    #: Offset commits refused (a rebalance moved the partitions; their next owner re-reads them).
    commit_failures: int = 0
    #: Batches that failed outside the record-level handling, in a row (retried from their first
    #: offsets; 0 when the last one worked), and why the last one failed.
    consume_failures: int = 0
    consume_last_error: str | None = None
    #: Seconds spent parsing + folding, and writing to the database (with the acks).
    fold_s: float = 0.0
    db_write_s: float = 0.0
    #: The writer's wall seconds per step, summed (COPY text, BEGIN, COPY, the statements'
    #: pipeline, COMMIT, the Kafka commit): where ``db_write_s`` goes.
    write_steps_s: dict = field(default_factory=dict)
    #: Seconds in Python's cyclic garbage collector, and its full (oldest-generation) passes: the
    #: hot path allocates per record, and a full pass walks every object the process holds.
    gc_s: float = 0.0
    gc_full: int = 0
    #: Partitions whose state was read from the database, and the (site, material) rows read.
    partitions_loaded: int = 0
    rows_loaded: int = 0
    last_batch_at: float | None = None
    last_checks_at: float | None = None
    last_checks: dict | None = None
    #: Wall seconds the periodic checks spent per step, summed (see stream.rollups.ChecksResult)
    checks_s: dict = field(default_factory=dict)
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
    if stats.consume_failures:
        problems.append(f"readings consumer ({stats.consume_failures} failure(s) in a row: {stats.consume_last_error})")
    if stats.outbox_failures:
        problems.append(f"alert outbox ({stats.outbox_failures} failure(s) in a row: {stats.outbox_last_error})")
    return problems
