"""Rejected and quarantined records: where a consumer with a database puts what it could not use.

Two different things (migration 0050):

* **rejected** (:func:`store_rejection`): bad input, known as such (a :class:`SchemaError`, an
  unknown order). Kept once per topic position with the original bytes and the reason; the
  consumer moves on at once.
* **quarantined** (:func:`note_failure`): the last line of defence. Handling the record raised
  something unexpected (a bug in our code, a value the database refuses). Each failure is counted
  per topic position in the database; the consumer tries again (the failure may be passing) and
  after :data:`QUARANTINE_AFTER` failures skips the record, so neither an in-process retry nor a
  restart loops on it forever. An outage (database or broker away) is never a record's fault and
  never counts: :func:`is_outage`.

``vreserve quarantine list`` shows them; ``vreserve quarantine replay ID`` publishes the original
bytes and key to the original topic again (after a fix) and marks the row replayed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import psycopg

from vreserve.decode import safe_text

log = logging.getLogger(__name__)

#: Failures of one record (per consumer and topic position) before it is skipped.
QUARANTINE_AFTER = 3

_OUTAGE_MODULES = ("kafka.errors", "aiokafka.errors", "paho")


@dataclass(frozen=True)
class RecordRef:
    """One consumed record: who read it, where it was, and its bytes."""

    consumer: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes


@dataclass(frozen=True)
class QuarantinedRecord:
    quarantine_id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    error: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    quarantined_at: datetime | None
    replayed_at: datetime | None


def is_outage(exc: BaseException) -> bool:
    """True for errors of the infrastructure (the record is not to blame): never counted."""
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, ConnectionError, TimeoutError)):
        return True
    return type(exc).__module__.startswith(_OUTAGE_MODULES)


def store_rejection(conn: psycopg.Connection, ref: RecordRef, reason: str) -> None:
    """Keep a rejected record once per topic position (a replay adds nothing)."""
    conn.execute(
        'INSERT INTO rejected_records (consumer, topic, partition, "offset", key, raw, reason)'
        " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
        (ref.consumer, ref.topic, ref.partition, ref.offset, ref.key, ref.raw, safe_text(reason)),
    )


def note_failure(conn: psycopg.Connection, ref: RecordRef, exc: BaseException,
                 after: int = QUARANTINE_AFTER) -> bool:
    """Count one failure of ``ref``; True when it is (now) quarantined and must be skipped."""
    error = safe_text(f"{type(exc).__name__}: {exc}")
    row = conn.execute(
        'INSERT INTO quarantined_records (consumer, topic, partition, "offset", key, raw, error)'
        " VALUES (%s,%s,%s,%s,%s,%s,%s)"
        ' ON CONFLICT (consumer, topic, partition, "offset") DO UPDATE'
        " SET attempts = quarantined_records.attempts + 1, error = EXCLUDED.error, last_seen = now()"
        " RETURNING quarantine_id, attempts",
        (ref.consumer, ref.topic, ref.partition, ref.offset, ref.key, ref.raw, error),
    ).fetchone()
    if row[1] >= after:
        conn.execute("UPDATE quarantined_records SET quarantined_at = COALESCE(quarantined_at, now())"
                     " WHERE quarantine_id = %s", (row[0],))
        return True
    return False


def run_guarded(conn: psycopg.Connection, ref: RecordRef, handle: Callable[[], None],
                after: int = QUARANTINE_AFTER) -> bool:
    """Run ``handle`` for one record; True if it ran, False if the record ended in quarantine.

    An unexpected error is counted (persisted) and the handler tried again, up to ``after``
    failures in all (including failures before a restart); an outage is raised unchanged, so the
    consumer behaves as before (nothing acked, retried when the service is back)."""
    while True:
        try:
            handle()
            return True
        except Exception as exc:  # noqa: BLE001 - the last line of defence: counted, then skipped
            if is_outage(exc):
                raise
            try:
                quarantined = note_failure(conn, ref, exc, after)
            except psycopg.Error:
                raise exc from None  # cannot even count it: behave as before
            log.error("%s: record %s[%d]@%d failed (%s: %s)%s", ref.consumer, ref.topic, ref.partition,
                      ref.offset, type(exc).__name__, safe_text(exc, 300),
                      "; quarantined, moving on" if quarantined else "; trying again")
            if quarantined:
                return False


def list_quarantined(conn: psycopg.Connection, include_replayed: bool = False,
                     consumer: str | None = None, only_id: int | None = None) -> list[QuarantinedRecord]:
    """Records counted or quarantined (by default those not replayed yet), oldest first."""
    rows = conn.execute(
        'SELECT quarantine_id, consumer, topic, partition, "offset", key, raw, error, attempts, first_seen,'
        " last_seen, quarantined_at, replayed_at FROM quarantined_records"
        " WHERE (%(all)s OR replayed_at IS NULL) AND (%(c)s::text IS NULL OR consumer = %(c)s)"
        " AND (%(id)s::bigint IS NULL OR quarantine_id = %(id)s) ORDER BY quarantine_id",
        {"all": include_replayed, "c": consumer, "id": only_id}).fetchall()
    return [QuarantinedRecord(r[0], r[1], r[2], r[3], r[4], bytes(r[5]) if r[5] is not None else None,
                              bytes(r[6]), *r[7:]) for r in rows]


def get_quarantined(conn: psycopg.Connection, quarantine_id: int) -> QuarantinedRecord | None:
    found = [q for q in list_quarantined(conn, include_replayed=True, only_id=quarantine_id)]
    return found[0] if found else None


def mark_replayed(conn: psycopg.Connection, quarantine_id: int, actor: str) -> None:
    conn.execute("UPDATE quarantined_records SET replayed_at = now(), replayed_by = %s WHERE quarantine_id = %s",
                 (actor, quarantine_id))
