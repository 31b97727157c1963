"""Kafka edge of audits: publish audit records, consume the audits topic.

At-least-once: offsets are committed only after the database transaction of every record in the
batch has committed and supervision's alert outbox (discrepancy alerts with ``published_at`` NULL)
has been flushed to the alerts topic. Replays are harmless
(an audit_id counts once; a rejected record's error row is keyed by topic/partition/offset).
A record that cannot be used (malformed, negative count, unknown site or material, key that is not
its site id) leaves an ``audit_rejections`` row with the reason and changes nothing else.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

from supervision import sql_audits
from vreserve import db_access
from vreserve import kafka_clients
from vreserve.kafka_access import SUPERVISION
from vreserve import topics
from vreserve.db import connect
from vreserve.decode import key_text, safe_text
from vreserve.quarantine import RecordRef, run_guarded
from vreserve.schemas.audits import AuditRecord
from vreserve.schemas.common import SchemaError
from vreserve.settings import Settings
from vreserve.signals import stop_on_signals
from vreserve.trust import TrustPolicy

log = logging.getLogger(__name__)


def publish_pending_alerts(conn, producer, settings: Settings) -> int:
    """Publish supervision's unpublished alerts (keyed by site), wait for the broker, mark them published."""
    total = 0
    while True:
        alerts = sql_audits.pending_alerts(conn)
        if not alerts:
            return total
        for a in alerts:
            producer.send(settings.topic(topics.ALERTS), key=(a.get("site_id") or "").encode(),
                          value=sql_audits.alert_json(a))
        producer.flush(30)
        sql_audits.mark_published(conn, [a["alert_id"] for a in alerts])
        total += len(alerts)


def publish_audits(settings: Settings, payloads: list[bytes], keys: list[str]) -> None:
    """Send raw audit payloads (tests and tools); keyed by site id."""
    producer = kafka_clients.producer(settings, SUPERVISION)
    try:
        for key, value in zip(keys, payloads):
            producer.send(settings.topic(topics.AUDITS), key=key.encode(), value=value)
        producer.flush(30)
    finally:
        producer.close(5)


@dataclass
class ConsumeStats:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    discrepancies: int = 0
    quarantined: int = 0


def consume(settings: Settings, group: str | None = None, max_records: int | None = None,
            idle_timeout_s: float | None = None, policy: TrustPolicy = TrustPolicy(),
            progress: Callable[[str], None] = lambda _m: None) -> ConsumeStats:
    """Apply audit records from the topic until ``max_records`` or ``idle_timeout_s`` without records."""
    topic = settings.topic(topics.AUDITS)
    consumer = kafka_clients.consumer(settings, SUPERVISION, topic,
                             group_id=group or settings.group("supervision-audits"),
                             enable_auto_commit=False, auto_offset_reset="earliest")
    producer = kafka_clients.producer(settings, SUPERVISION)
    stats = ConsumeStats()
    last = time.monotonic()
    try:
        with connect(settings.pg_dsn_for(db_access.SUPERVISION), autocommit=True) as conn, stop_on_signals() as stopping:
            while (max_records is None or stats.records < max_records) and not stopping.is_set():
                batch = consumer.poll(timeout_ms=500, max_records=200)
                if not batch:
                    publish_pending_alerts(conn, producer, settings)  # e.g. left over from a CLI audit
                    if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                        break
                    continue
                last = time.monotonic()
                for tp, messages in batch.items():
                    for msg in messages:
                        stats.records += 1
                        ref = RecordRef("supervision-audits", msg.topic, msg.partition, msg.offset, msg.key,
                                        msg.value or b"")
                        if not run_guarded(conn, ref, partial(_handle, conn, msg, policy, stats)):
                            stats.quarantined += 1
                publish_pending_alerts(conn, producer, settings)
                consumer.commit()
                progress(f"{stats.records} audit record(s): {stats.applied} applied, {stats.duplicates} "
                         f"duplicate(s), {stats.rejected} rejected, {stats.quarantined} quarantined, "
                         f"{stats.discrepancies} discrepancy alert(s)")
    finally:
        consumer.close()  # leaves the group at once (SIGTERM / SIGINT end the loop above)
        producer.close(5)
    return stats


def _handle(conn, msg, policy: TrustPolicy, stats: ConsumeStats) -> None:
    source = f"{msg.topic}:{msg.partition}:{msg.offset}"
    key = key_text(msg.key)
    raw = msg.value or b""
    try:
        rec = AuditRecord.from_json(raw)
        if key is not None and key != rec.site_id:
            raise SchemaError(f"record keyed {key!r} but counts site {rec.site_id!r}")
        result = sql_audits.record_audit(conn, rec, f"topic:{msg.partition}:{msg.offset}", policy)
    except (SchemaError, sql_audits.AuditRejected) as exc:
        stats.rejected += 1
        log.warning("audit record %s rejected: %s", source, safe_text(exc, 500))
        sql_audits.store_rejection(conn, source, "topic", key, raw, safe_text(exc))
        return
    if result.duplicate:
        stats.duplicates += 1
    else:
        stats.applied += 1
    stats.discrepancies += len(result.alerts)  # published by the outbox after the batch
