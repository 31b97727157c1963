"""Readings-topic records made here, for tests and for the benchmark's Kafka-only mode.

The real source is the ingest bridge; these helpers build the same :class:`ReadingBatch` records
(keyed by site id) so the worker can be driven without MQTT.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from vreserve import kafka_clients, topics
from vreserve.kafka_access import BRIDGE
from vreserve.schemas.common import utc_now
from vreserve.schemas.readings import Reading, ReadingBatch, StockReport
from vreserve.settings import Settings


def reading_batch(site_id: str, seq: int, ts: datetime, quantities: dict[str, tuple[float, str]],
                  received_at: datetime | None = None) -> ReadingBatch:
    """One record: ``quantities`` maps material -> (qty, unit). Times are cut to milliseconds,
    the precision of the wire format, so the record equals itself after a round trip."""
    ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    report = StockReport(site_id=site_id, ts=ts, seq=seq,
                         readings=tuple(Reading(m, q, u) for m, (q, u) in quantities.items()))
    return ReadingBatch(report, received_at or utc_now(), f"vr/v1/sites/{site_id}/stock")


def producer(settings: Settings, **overrides):
    """A producer of readings as the bridge would write them (the bridge's principal)."""
    conf = dict(acks="all", linger_ms=5, batch_size=256 * 1024, compression_type=None,
                max_in_flight_requests_per_connection=1)
    conf.update(overrides)
    return kafka_clients.producer(settings, BRIDGE, **conf)


def send_batches(settings: Settings, batches: Iterable[ReadingBatch], prod=None) -> int:
    """Send records keyed by site id to the readings topic; flushes before returning."""
    own = prod is None
    prod = prod or producer(settings)
    topic = settings.topic(topics.READINGS)
    n = 0
    try:
        for b in batches:
            prod.send(topic, key=b.report.site_id.encode(), value=b.to_json())
            n += 1
        prod.flush(timeout=60)
    finally:
        if own:
            prod.close(timeout=10)
    return n


def send_raw(settings: Settings, key: bytes | None, value: bytes | None, prod=None) -> None:
    """Send arbitrary bytes to the readings topic (schema-drift tests)."""
    own = prod is None
    prod = prod or producer(settings)
    try:
        prod.send(settings.topic(topics.READINGS), key=key, value=value)
        prod.flush(timeout=30)
    finally:
        if own:
            prod.close(timeout=10)
