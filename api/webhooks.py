"""Carriers without Kafka: every order, supersede and cancel of the dispatch-orders topic is POSTed
to the carrier's webhook, signed, in topic order, with the same ids as on the topic.

`vreserve carrier-webhooks run` (one per deployment) reads the topic with its own consumer group, stores
one delivery row per (carrier, record) *before* committing its offsets (at-least-once; the order id
is the idempotency key, so a redelivery is harmless), then delivers each carrier's queue head
first. A failed POST is retried with exponential backoff; after ``max_attempts`` failures the
carrier's queue is **held** with the reason: nothing later is sent (order is kept) and nothing is
dropped until an operator releases it (`vreserve carrier-webhooks release CARRIER`).

Signature (docs/api.md, vreserve/carrier_webhooks.py): ``X-VR-Signature: t=<unix seconds>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>``; the receiver recomputes it and refuses a timestamp older than
5 minutes (replay).
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

from vreserve import db_access
from vreserve import kafka_clients, topics
from vreserve.carrier_webhooks import (  # noqa: F401 - the contract, shared with receivers
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    REPLAY_WINDOW_S,
    SIGNATURE_HEADER,
    sign,
    verify_signature,
)
from vreserve.db import connect
from vreserve.kafka_access import OPERATIONS
from vreserve.schemas.common import SchemaError
from vreserve.schemas.dispatch import CancelRecord, decode_dispatch_record
from vreserve.settings import Settings

log = logging.getLogger(__name__)

def register(conn, carrier_id: str, url: str, created_by: str) -> str:
    """Set (or replace) a carrier's webhook; returns the new signing secret (shown once)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO carrier_webhooks (carrier_id, url, secret, created_by) VALUES (%s,%s,%s,%s)"
                 " ON CONFLICT (carrier_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret,"
                 " created_by = EXCLUDED.created_by, held_at = NULL, held_reason = NULL",
                 (carrier_id, url, secret, created_by))
    return secret


def held(conn) -> list[dict]:
    """Carriers whose queue is held, with the reason and how many records wait."""
    keys = ("carrier_id", "url", "held_at", "held_reason", "waiting", "first_waiting_order")
    rows = conn.execute(
        "SELECT w.carrier_id, w.url, w.held_at, w.held_reason,"
        " (SELECT count(*) FROM webhook_deliveries d WHERE d.carrier_id = w.carrier_id AND d.status <> 'delivered'),"
        " (SELECT d.order_id FROM webhook_deliveries d WHERE d.carrier_id = w.carrier_id AND d.status <> 'delivered'"
        "  ORDER BY d.seq LIMIT 1)"
        " FROM carrier_webhooks w WHERE w.held_at IS NOT NULL ORDER BY w.held_at").fetchall()
    return [dict(zip(keys, r)) for r in rows]


def release(conn, carrier_id: str) -> int:
    """Resume a held carrier: its held and pending records are due again, in order. Returns how many."""
    with conn.transaction():
        cur = conn.execute("UPDATE carrier_webhooks SET held_at = NULL, held_reason = NULL WHERE carrier_id = %s"
                           " AND held_at IS NOT NULL", (carrier_id,))
        if cur.rowcount == 0:
            raise LookupError(f"carrier {carrier_id!r} has no held webhook")
        return conn.execute("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()"
                            " WHERE carrier_id = %s AND status <> 'delivered'", (carrier_id,)).rowcount


# ------------------------------------------------------------------------------ enqueue
def event_of(record) -> str:
    if isinstance(record, CancelRecord):
        return "supersede" if record.superseded_by else "cancel"
    return "order"


def enqueue(conn, raw: bytes, source: str) -> int:
    """One delivery row per carrier serving the record's region (idempotent). Returns rows added."""
    try:
        record = decode_dispatch_record(raw)
    except SchemaError as exc:
        log.warning("dispatch record %s not forwarded to webhooks: %s", source, exc)
        return 0
    region = getattr(record, "region", None)
    if region is None:
        row = conn.execute("SELECT region FROM emergencies WHERE emergency_id = %s", (record.emergency_id,)).fetchone()
        region = row[0] if row else None
    if region is None:
        log.warning("dispatch record %s: emergency %s unknown; no carrier to send it to", source, record.emergency_id)
        return 0
    event = event_of(record)
    cur = conn.execute(
        "INSERT INTO webhook_deliveries (carrier_id, delivery_key, event, order_id, payload, source)"
        " SELECT c.carrier_id, %s, %s, %s, %s, %s FROM carriers c JOIN carrier_webhooks w USING (carrier_id)"
        " WHERE %s = ANY(c.regions) ORDER BY c.carrier_id ON CONFLICT (carrier_id, delivery_key) DO NOTHING",
        (f"{event}:{record.order_id}", event, record.order_id, raw.decode("utf-8"), source, region))
    return cur.rowcount


# ------------------------------------------------------------------------------ deliver
@dataclass
class DeliveryPolicy:
    max_attempts: int = 5
    base_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0

    def backoff(self, attempts: int) -> float:
        return min(self.max_backoff_s, self.base_backoff_s * 2 ** (attempts - 1))


@dataclass
class Counters:
    enqueued: int = 0
    delivered: int = 0
    failures: int = 0
    held: int = 0
    by_carrier: dict = field(default_factory=dict)


def deliver_due(conn, client: httpx.Client, policy: DeliveryPolicy, counters: Counters) -> int:
    """Send each non-held carrier's queue head while it is due and succeeds. Returns records sent."""
    sent = 0
    carriers = conn.execute("SELECT carrier_id, url, secret FROM carrier_webhooks WHERE held_at IS NULL"
                            " ORDER BY carrier_id").fetchall()
    for carrier_id, url, secret in carriers:
        while True:
            head = conn.execute(
                "SELECT seq, delivery_key, event, payload, attempts, next_attempt_at <= now() FROM webhook_deliveries"
                " WHERE carrier_id = %s AND status = 'pending' ORDER BY seq LIMIT 1", (carrier_id,)).fetchone()
            if head is None or not head[5]:
                break
            if not _post_one(conn, client, policy, counters, carrier_id, url, secret, head):
                break
            sent += 1
    return sent


def _post_one(conn, client, policy, counters, carrier_id, url, secret, head) -> bool:
    seq, key, event, payload, attempts = head[:5]
    body = json.dumps({"event": event, "delivery_id": f"D-{seq}", "idempotency_key": key,
                       "record": json.loads(payload)}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               IDEMPOTENCY_HEADER: key, EVENT_HEADER: event}
    error = None
    try:
        response = client.post(url, content=body, headers=headers, timeout=policy.timeout_s)
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code} from {url}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__} posting to {url}: {str(exc)[:200]}"
    if error is None:
        conn.execute("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), attempts = %s,"
                     " last_error = NULL WHERE seq = %s", (attempts + 1, seq))
        counters.delivered += 1
        return True
    attempts += 1
    counters.failures += 1
    if attempts >= policy.max_attempts:
        reason = f"{attempts} failed attempts; last: {error}"
        with conn.transaction():
            conn.execute("UPDATE webhook_deliveries SET status = 'held', attempts = %s, last_error = %s WHERE seq = %s",
                         (attempts, error, seq))
            conn.execute("UPDATE carrier_webhooks SET held_at = now(), held_reason = %s WHERE carrier_id = %s",
                         (f"{key}: {reason}", carrier_id))
        counters.held += 1
        log.error("webhook of carrier %s held at %s: %s", carrier_id, key, reason)
    else:
        conn.execute("UPDATE webhook_deliveries SET attempts = %s, last_error = %s,"
                     " next_attempt_at = now() + make_interval(secs => %s) WHERE seq = %s",
                     (attempts, error, policy.backoff(attempts), seq))
    return False


def run(settings: Settings, policy: DeliveryPolicy = DeliveryPolicy(), stop: Callable[[], bool] = lambda: False,
        progress: Callable[[str], None] = lambda _m: None) -> Counters:
    """The service loop: enqueue new topic records (then commit), deliver what is due; until ``stop()``."""
    consumer = kafka_clients.consumer(settings, OPERATIONS, settings.topic(topics.DISPATCH_ORDERS),
                                      group_id=settings.group("webhooks"), enable_auto_commit=False,
                                      auto_offset_reset="earliest")
    counters = Counters()
    last_report = time.monotonic()
    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn, httpx.Client() as client:
            while not stop():
                batch = consumer.poll(timeout_ms=200, max_records=500)
                for tp, messages in batch.items():
                    for msg in messages:
                        counters.enqueued += enqueue(conn, msg.value or b"", f"{tp.topic}:{tp.partition}:{msg.offset}")
                if batch:
                    consumer.commit()  # rows are stored (autocommit) before the offsets move
                deliver_due(conn, client, policy, counters)
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    progress(f"webhooks: {counters.enqueued} queued, {counters.delivered} delivered, "
                             f"{counters.failures} failed attempts, {counters.held} held")
    finally:
        consumer.close()
    return counters
