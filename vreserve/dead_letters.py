"""Why a site's reports were refused: its dead letters, read back from the dead-letter topic.

The bridge keys every dead letter by the site id of its topic, so one site's refusals are the
records with that key (all partitions are read: a key always lands in one, but which one is the
client's hash, not ours to assume). Read-only, bounded by the topic's end at the start of the call.
The one reader behind `vreserve ingest dead-letters` and ``GET /api/v1/sites/{id}/dead-letters``
(both read with the operations principal, which may read the dead-letter topic).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from kafka import TopicPartition

from vreserve import kafka_clients, topics
from vreserve.kafka_access import OPERATIONS
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.readings import DeadLetter
from vreserve.settings import Settings

#: How long to wait for the broker to hand over the records up to the end offsets, s.
READ_TIMEOUT_S = 30.0


class DeadLettersUnread(RuntimeError):
    """The topic could not be read to its end: an incomplete list would read as the whole one."""


@dataclass(frozen=True)
class Refusal:
    """One refused report of a site, as its owner reads it."""

    at: datetime
    kind: str
    reason: str
    payload_head: str

    def line(self) -> str:
        return f"{self.at.isoformat(timespec='seconds')}  {self.kind:<16} {self.reason}  payload: {self.payload_head}"

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "kind": self.kind, "reason": self.reason, "payload_head": self.payload_head}


def site_refusals(settings: Settings, site_id: str, since: timedelta | datetime | None = None, limit: int = 100,
                  offset: int = 0, kind: str | None = None) -> list[Refusal]:
    """The dead letters of ``site_id`` newer than ``since`` (a span back from now, or a time), of
    ``kind`` if given: the ``limit`` newest after skipping the ``offset`` newest, oldest first.
    Only ``offset + limit`` records are held while reading, however many the topic keeps."""

    name = settings.topic(topics.READINGS_DEAD_LETTER)
    consumer = kafka_clients.consumer(settings, OPERATIONS, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=10000)
    try:
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [])]
        if not parts:
            raise DeadLettersUnread(f"topic {name} does not exist (run `vreserve topics`)")
        consumer.assign(parts)
        ends = consumer.end_offsets(parts, timeout_ms=10000)
        starts = _start_offsets(consumer, parts, since)
        for tp in parts:
            consumer.seek(tp, starts.get(tp) if starts.get(tp) is not None else ends[tp])
        # a key lands in one partition, so its records arrive in offset order: keeping the newest
        # offset + limit of them is enough
        newest: deque[Refusal] = deque(maxlen=offset + limit)
        key = site_id.encode()
        # the seek is by the records' broker time (never earlier than the refusal's own `at`); the
        # refusal's time decides
        cutoff = None if since is None else since if isinstance(since, datetime) else utc_now() - since
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                newest.extend(r for r in (_refusal(rec) for rec in recs if rec.key == key)
                              if r and (kind is None or r.kind == kind) and (cutoff is None or r.at > cutoff))
        if any(consumer.position(tp) < ends[tp] for tp in parts):
            raise DeadLettersUnread(f"the broker did not hand over {name} up to its end within "
                                    f"{READ_TIMEOUT_S:g} s: no partial list is given")
        found = sorted(newest, key=lambda r: r.at)
        return found[:max(0, len(found) - offset)] if offset else found
    finally:
        consumer.close()


def _start_offsets(consumer, parts, since: timedelta | datetime | None) -> dict:
    if since is None:
        return dict(consumer.beginning_offsets(parts, timeout_ms=10000))
    cutoff = since if isinstance(since, datetime) else utc_now() - since
    stamp = int(cutoff.timestamp() * 1000)
    found = consumer.offsets_for_times({tp: stamp for tp in parts}, timeout_ms=10000)
    return {tp: (o.offset if o is not None else None) for tp, o in found.items()}


def _refusal(record) -> Refusal | None:
    try:
        letter = DeadLetter.from_json(record.value or b"")
    except SchemaError:
        return None
    head = letter.payload[:120].decode("utf-8", "replace")
    return Refusal(letter.at, str(letter.context.get("kind", "?")), letter.reason, head)
