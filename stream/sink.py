"""The PostgreSQL sink: one transaction per batch of readings, written before offsets are acked.

Idempotent by construction, so at-least-once delivery cannot double count:
- ``stock_readings``: INSERT ... ON CONFLICT (site_id, material_id, ts, seq) DO NOTHING;
- ``stock_latest``: upsert that only moves forward by (boot, seq, ts) (older rows never overwrite);
- ``alerts``: deterministic alert_id, ON CONFLICT DO NOTHING;
- ``stream_offsets``: the partition's frontier only moves forward (GREATEST), in the same
  transaction as the rows it vouches for (see :mod:`stream.repair`).
One write path, the same on plain PostgreSQL and TimescaleDB: the batch is COPied (text format,
built with string joins) into a session-local staging table and moved with INSERT ... SELECT ...
ON CONFLICT, de-duplicating per key on the server: cheaper on the client than psycopg's array
adaptation, which costs more CPU than the rest of the worker together. The writes never consult the worker's
table, so a replay after a crash writes exactly what a first pass would.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import psycopg

from vreserve.schemas.alerts import Alert
from vreserve.schemas.common import format_ts

from stream.records import ReadingRecord, StockReading

log = logging.getLogger(__name__)

INSERT_ALERTS = """
INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details)
SELECT a.alert_id, a.kind, a.severity, a.site_id, s.grid_cell, a.material_id, a.message, a.at, a.details
FROM unnest(%(id)s::text[], %(kind)s::text[], %(severity)s::text[], %(site)s::text[],
            %(material)s::text[], %(message)s::text[], %(at)s::timestamptz[], %(details)s::jsonb[])
     AS a(alert_id, kind, severity, site_id, material_id, message, at, details)
LEFT JOIN sites s ON s.site_id = a.site_id
ON CONFLICT (alert_id) DO NOTHING
"""


UPSERT_OFFSETS = """
INSERT INTO stream_offsets AS o (consumer, topic, partition, next_offset, updated_at)
SELECT f.consumer, f.topic, f.partition, f.next_offset, now()
FROM unnest(%(consumer)s::text[], %(topic)s::text[], %(partition)s::int[], %(next_offset)s::bigint[])
     AS f(consumer, topic, partition, next_offset)
ON CONFLICT (consumer, topic, partition) DO UPDATE
SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
"""

#: (consumer, topic, partition) -> next offset: every record below it is in this batch or before
Frontier = dict[tuple[str, str, int], int]

UPSERT_SITES = """
INSERT INTO stream_sites AS s (topic, site_id, partition)
SELECT %(topic)s, f.site_id, f.partition
FROM unnest(%(site)s::text[], %(partition)s::int[]) AS f(site_id, partition)
ON CONFLICT (topic, site_id) DO UPDATE SET partition = EXCLUDED.partition
WHERE s.partition <> EXCLUDED.partition
"""
PARTITION_LATEST = """
SELECT l.site_id, l.material_id, l.qty, l.unit, l.ts, l.seq, l.boot
FROM stream_sites s JOIN stock_latest l ON l.site_id = s.site_id
WHERE s.topic = %s AND s.partition = %s
"""


@dataclass(frozen=True)
class NewSites:
    """Sites a worker saw for the first time, recorded with the batch (see stream.memory)."""

    topic: str
    sites: list[tuple[int, str]]  # (partition, site_id)


@dataclass(frozen=True)
class Written:
    """What one batch changed (counts from the database, not from the input)."""

    readings_in: int
    history_rows: int
    latest_rows: int
    alerts_new: int
    ts_min: datetime | None
    ts_max: datetime | None


def alert_params(alerts: Sequence[Alert]) -> dict:
    return {
        "id": [a.alert_id for a in alerts],
        "kind": [a.kind for a in alerts],
        "severity": [a.severity for a in alerts],
        "site": [a.site_id for a in alerts],
        "material": [a.material_id for a in alerts],
        "message": [a.message for a in alerts],
        "at": [a.at for a in alerts],
        "details": [json.dumps(a.details) for a in alerts],
    }


CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stream_stage (
    site_id text, material_id text, ts timestamptz, seq bigint, boot bigint, qty float8, unit text,
    received_at timestamptz
) ON COMMIT DELETE ROWS
"""
COPY_STAGE = "COPY stream_stage (site_id, material_id, ts, seq, boot, qty, unit, received_at) FROM STDIN"
STAGE_TO_HISTORY = """
INSERT INTO stock_readings (site_id, material_id, ts, seq, boot, qty, unit, grid_cell, received_at)
SELECT r.site_id, r.material_id, r.ts, r.seq, r.boot, r.qty::numeric, r.unit, s.grid_cell, r.received_at
FROM stream_stage r LEFT JOIN sites s ON s.site_id = r.site_id
ON CONFLICT (site_id, material_id, ts, seq) DO NOTHING
"""
STAGE_TO_LATEST = """
INSERT INTO stock_latest AS l (site_id, material_id, qty, unit, ts, seq, boot, updated_at)
SELECT DISTINCT ON (site_id, material_id) site_id, material_id, qty::numeric, unit, ts, seq, boot, now()
FROM stream_stage
ORDER BY site_id, material_id, boot DESC, seq DESC, ts DESC
ON CONFLICT (site_id, material_id) DO UPDATE
SET qty = EXCLUDED.qty, unit = EXCLUDED.unit, ts = EXCLUDED.ts, seq = EXCLUDED.seq, boot = EXCLUDED.boot,
    updated_at = now()
WHERE (l.boot, l.seq, l.ts) < (EXCLUDED.boot, EXCLUDED.seq, EXCLUDED.ts)
"""

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def copy_text(readings: Sequence[StockReading]) -> str:
    """The batch as COPY text rows (one ``format_ts`` per record, not per reading)."""
    lines = []
    received_text: dict[datetime, str] = {}
    for r in readings:
        rec = received_text.get(r.received_at)
        if rec is None:
            rec = received_text[r.received_at] = format_ts(r.received_at)
        lines.append(f"{_copy_text(r.site_id)}\t{_copy_text(r.material_id)}\t{r.ts_text}\t{r.seq}\t{r.boot}\t"
                     f"{r.qty!r}\t{_copy_text(r.unit)}\t{rec}\n")
    return "".join(lines)


def records_copy_text(records: Sequence[ReadingRecord]) -> str:
    """The records' readings as COPY text rows (the timestamps are already canonical text)."""
    lines: list[str] = []
    add = lines.append
    for rec in records:
        tail = f"\t{rec.ts_text}\t{rec.seq}\t{rec.boot}\t"
        end = f"\t{rec.received_text}\n"
        if rec.plain:  # nothing to escape (see stream.records)
            head = f"{rec.site_id}\t"
            for i in rec.items:
                add(f"{head}{i.material}{tail}{i.qty!r}\t{i.unit}{end}")
        else:
            head = f"{_copy_text(rec.site_id)}\t"
            for i in rec.items:
                add(f"{head}{_copy_text(i.material)}{tail}{i.qty!r}\t{_copy_text(i.unit)}{end}")
    return "".join(lines)


@dataclass(frozen=True)
class Rows:
    """A batch's readings, ready for COPY: the text, how many, and their time span."""

    copy_text: str
    count: int
    ts_min: datetime | None
    ts_max: datetime | None

    @classmethod
    def of_readings(cls, readings: Sequence[StockReading]) -> "Rows":
        return cls(copy_text(readings) if readings else "", len(readings),
                   min((r.ts for r in readings), default=None), max((r.ts for r in readings), default=None))

    @classmethod
    def of_records(cls, records: Sequence[ReadingRecord]) -> "Rows":
        return cls(records_copy_text(records), sum(len(r.items) for r in records),
                   min((r.ts for r in records), default=None), max((r.ts for r in records), default=None))


async def write_batch(conn: psycopg.AsyncConnection, readings: Sequence[StockReading],
                      alerts: Sequence[Alert], frontier: Frontier | None = None) -> Written:
    """Write one batch (and the partitions' new frontier) in one transaction on ``conn``."""
    return await write_rows(conn, Rows.of_readings(readings), alerts, frontier)


#: connections whose session already has the staging table (created once per session; it is
#: added here only once the transaction that created it committed)
_STAGED: "weakref.WeakSet[psycopg.AsyncConnection]" = weakref.WeakSet()


async def write_rows(conn: psycopg.AsyncConnection, rows: Rows, alerts: Sequence[Alert],
                     frontier: Frontier | None = None, new_sites: NewSites | None = None,
                     steps: dict[str, float] | None = None) -> Written:
    """Write one batch, the partitions' new frontier and the sites first seen, in one transaction.
    Round trips: BEGIN, the COPY, then every statement after it and the COMMIT in one pipeline
    (each round trip waits for the server to be scheduled, which on a loaded machine costs more
    than the work). ``steps`` (if given) adds each step's wall seconds: where the writer's time
    goes. On any failure the transaction is rolled back (or the connection closed) before raising."""
    timer = _StepTimer(steps)
    staged = conn in _STAGED
    history, latest, new_alerts = (conn.cursor() for _ in range(3))
    try:
        if conn.autocommit:
            await conn.execute("BEGIN")
        timer.lap("begin")
        if rows.count:
            async with conn.cursor() as cur:
                if not staged:
                    await cur.execute(CREATE_STAGE)
                async with cur.copy(COPY_STAGE) as copy:
                    await copy.write(rows.copy_text)
            timer.lap("copy")
        async with conn.pipeline():
            await _after_copy(conn, rows, history, latest, new_alerts, alerts, frontier, new_sites)
            await conn.execute("COMMIT")  # answered with the rest: durable once the pipeline returns
        timer.lap("statements_commit")
    except BaseException:
        await _abandon(conn)
        raise
    if rows.count:
        _STAGED.add(conn)
    return Written(readings_in=rows.count, history_rows=max(history.rowcount, 0) if rows.count else 0,
                   latest_rows=max(latest.rowcount, 0) if rows.count else 0,
                   alerts_new=max(new_alerts.rowcount, 0) if alerts else 0, ts_min=rows.ts_min, ts_max=rows.ts_max)


async def _after_copy(conn: psycopg.AsyncConnection, rows: Rows, history, latest, new_alerts,
                      alerts: Sequence[Alert], frontier: Frontier | None, new_sites: NewSites | None) -> None:
    """The statements after the COPY, queued in the open pipeline (each on its own cursor, whose
    rowcount the caller reads)."""
    if rows.count:
        await history.execute(STAGE_TO_HISTORY)
        await latest.execute(STAGE_TO_LATEST)
    if alerts:
        await new_alerts.execute(INSERT_ALERTS, alert_params(alerts))
    if new_sites and new_sites.sites:
        await conn.execute(UPSERT_SITES, {"topic": new_sites.topic, "site": [s for _, s in new_sites.sites],
                                          "partition": [p for p, _ in new_sites.sites]})
    if frontier:
        keys = sorted(frontier)
        await conn.execute(UPSERT_OFFSETS, {
            "consumer": [k[0] for k in keys], "topic": [k[1] for k in keys],
            "partition": [k[2] for k in keys], "next_offset": [frontier[k] for k in keys]})


async def _abandon(conn: psycopg.AsyncConnection) -> None:
    """A failed write's transaction rolled back; a connection that cannot even do that is closed
    (the sink opens a new one)."""
    try:
        if not conn.closed:
            await conn.rollback()
    except BaseException:  # noqa: BLE001 - the connection is unusable: close it
        await conn.close()


class _StepTimer:
    """Adds the wall seconds since the last lap to ``steps[name]`` (nothing when ``steps`` is None)."""

    def __init__(self, steps: dict[str, float] | None) -> None:
        self.steps, self.last = steps, time.perf_counter()

    def lap(self, name: str) -> None:
        if self.steps is not None:
            now = time.perf_counter()
            self.steps[name] = self.steps.get(name, 0.0) + now - self.last
            self.last = now


class PostgresSink:
    """Owns one async connection; retries a batch through connection loss until it is written.

    Only connection-level failures are retried (the server restarting, the network); a batch the
    database refuses (a data error) is raised to the caller, which writes record by record and
    dead-letters what still fails.
    """

    def __init__(self, dsn: str, max_backoff_s: float = 10.0, role: str = "stream") -> None:
        self._dsn = dsn
        #: the connection's ``application_name``: which of the worker's jobs a backend serves
        #: (``pg_stat_activity``; the backlog bench splits PostgreSQL's CPU by it)
        self._application_name = f"vr-stream:{role}"
        self._conn: psycopg.AsyncConnection | None = None
        self._max_backoff_s = max_backoff_s
        #: Set while a write is being retried (the health endpoint reports "degraded").
        self.failing_since: float | None = None
        self.last_error: str | None = None

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._dsn, prepare_threshold=None, connect_timeout=10, autocommit=True,
                application_name=self._application_name)
        return self._conn

    async def write(self, rows: Rows, alerts: Sequence[Alert] = (), frontier: Frontier | None = None,
                    new_sites: NewSites | None = None, steps: dict[str, float] | None = None) -> Written:
        async def attempt(conn):
            return await write_rows(conn, rows, alerts, frontier, new_sites, steps)
        return await self._retrying(attempt)

    async def partition_state(self, consumer: str, topic: str, partition: int) -> tuple[int | None, list[tuple]]:
        """A partition's stored frontier and its sites' ``stock_latest`` rows (see stream.memory)."""
        async def attempt(conn):
            cur = await conn.execute("SELECT next_offset FROM stream_offsets"
                                     " WHERE consumer = %s AND topic = %s AND partition = %s",
                                     (consumer, topic, partition))
            row = await cur.fetchone()
            rows = await (await conn.execute(PARTITION_LATEST, (topic, partition))).fetchall()
            return (None if row is None else int(row[0])), rows
        return await self._retrying(attempt)

    async def _retrying(self, attempt):
        """``attempt(conn)`` until the database answers (connection-level failures only)."""
        backoff = 0.2
        while True:
            try:
                conn = await self.connection()
                result = await attempt(conn)
                self.failing_since = None
                return result
            except psycopg.OperationalError as exc:
                self.failing_since = self.failing_since or time.time()
                self.last_error = str(exc).strip()[:500]
                log.warning("database write failed (%s); retrying in %.1f s", exc, backoff)
                await self.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None
