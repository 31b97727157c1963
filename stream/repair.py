"""Reading back records that the consumer skipped.

The sink stores, per readings partition, the offset below which every record is in the tables
(``stream_offsets``, written in the batch's own transaction). A record arriving beyond that frontier
means the records between were never handed to the worker (when Faust's consumer took the
records, its committed offset passed them: faust-streaming #606, an in-flight head record; #596,
queues cleared during recovery; and anything that moves the group's offsets does too). The
worker then reads that range itself with a group-less consumer and folds it in first, in order.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from aiokafka import TopicPartition

from vreserve import kafka_clients
from vreserve.kafka_access import STREAM
from vreserve.settings import Settings


class Source(NamedTuple):
    """Where a readings record came from (the worker's consumer, or a record read back here)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the Kafka record's timestamp, s (the bridge's produce time), when known
    timestamp: float | None = None


def gap_start(offset: int, folded: int | None, stored: int | None) -> int | None:
    """Where a skipped range begins, or None when ``offset`` follows on (or replays) what is known:
    ``folded`` = next offset this process has folded, ``stored`` = the database's frontier."""
    known = [x for x in (folded, stored) if x is not None]
    if not known:
        return None  # nothing written for this partition yet: the committed offset stands
    frontier = max(known)
    return frontier if offset > frontier else None


async def fetch_range(settings: Settings, topic: str, partition: int, start: int, end: int,
                      timeout_s: float = 60.0) -> tuple[list[Source], int]:
    """Records ``start <= offset < end`` of one partition, and how many of those offsets held no
    record any more (deleted by retention). Raises TimeoutError when Kafka does not deliver them."""

    tp = TopicPartition(topic, partition)
    consumer = kafka_clients.aio_consumer(settings, STREAM, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest")
    await consumer.start()
    out: list[Source] = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}[{partition}] offsets {start}..{end - 1} not read within {timeout_s:.0f} s")
            records = (await consumer.getmany(tp, timeout_ms=500, max_records=2000)).get(tp, [])
            out.extend(Source(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0) for r in records if r.offset < end)
    finally:
        await consumer.stop()
    return out, (end - start) - len(out)
