"""The plain-consumer baseline of ``vreserve bench stream --backlog``: the least a Python consumer
must do to write the readings topic into the database the way the worker does.

Equal in what it writes: orjson decode, COPY of every reading into the same session-local
staging table, the worker's own ``INSERT ... ON CONFLICT`` into ``stock_readings`` and its
forward-only ``stock_latest`` upsert (the SQL is the worker's, :mod:`stream.sink`), one
transaction per 2,000 records, the group's offsets committed after the transaction. What it does
not do (so the ratio shows what the worker's extra guarantees cost): no dead-letter topic, no
in-memory state or restart alerts, no frontier, no health page, no Faust. Its Kafka client is
aiokafka, the one under Faust, so the ratio is Faust's and the worker's own cost.

Run as its own process (``python -m bench.stream_baseline``) so its CPU is measured alone; it
prints one JSON line: readings, seconds and CPU seconds from its first record to its last commit.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson
import psycopg

from bench.procs import cpu_seconds
from stream.sink import COPY_STAGE, CREATE_STAGE, STAGE_TO_HISTORY, STAGE_TO_LATEST
from vreserve import kafka_clients, topics
from vreserve.kafka_access import ADMIN
from vreserve.settings import Settings

RECORDS_PER_TRANSACTION = 2000


def copy_rows(values: list[bytes]) -> tuple[str, int]:
    """COPY text of the records' readings (no escaping needed for the bench's generated ids)."""
    lines = []
    for raw in values:
        obj = orjson.loads(raw)
        head = f"{obj['site_id']}\t"
        tail = f"\t{obj['ts']}\t{obj['seq']}\t{obj.get('boot', 0)}\t"
        rec = obj["received_at"]
        for r in obj["readings"]:
            lines.append(f"{head}{r['material']}{tail}{float(r['qty'])!r}\t{r['unit']}\t{rec}\n")
    return "".join(lines), len(lines)


async def run(settings: Settings, group: str, expected_readings: int, idle_s: float = 20.0) -> dict:
    """Drain the readings topic in ``group`` until ``expected_readings`` are committed (or nothing
    arrives for ``idle_s``)."""
    consumer = kafka_clients.aio_consumer(settings, ADMIN, settings.topic(topics.READINGS),
                                          group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                                          max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    readings = 0
    started = cpu0 = pg0 = None
    last = time.monotonic()
    try:
        async with await psycopg.AsyncConnection.connect(settings.pg_dsn, autocommit=True) as conn:
            await conn.execute(CREATE_STAGE)
            backend = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
            while readings < expected_readings and time.monotonic() - last < idle_s:
                polled = await consumer.getmany(timeout_ms=500, max_records=RECORDS_PER_TRANSACTION)
                values = [r.value for recs in polled.values() for r in recs]
                if not values:
                    continue
                if started is None:
                    started, cpu0, pg0 = time.monotonic(), time.process_time(), cpu_seconds(backend)
                text, n = copy_rows(values)
                async with conn.transaction():
                    async with conn.cursor() as cur:
                        async with cur.copy(COPY_STAGE) as copy:
                            await copy.write(text)
                        await cur.execute(STAGE_TO_HISTORY)
                        await cur.execute(STAGE_TO_LATEST)
                await consumer.commit()
                readings += n
                last = time.monotonic()
            pg_cpu = cpu_seconds(backend) - (pg0 or 0.0)  # its backend, read before the connection closes
    finally:
        await consumer.stop()
    if started is None:
        return {"readings": 0, "seconds": 0.0, "cpu_s": 0.0, "pg_cpu_s": 0.0}
    return {"readings": readings, "seconds": last - started, "cpu_s": time.process_time() - cpu0, "pg_cpu_s": pg_cpu}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(Settings.from_env(), sys.argv[1], int(sys.argv[2])))), flush=True)
