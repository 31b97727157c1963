"""Alerts to registered webhooks, so a duty officer's paging system can take them.

Every alert at or above a webhook's ``min_severity`` (critical by default) is posted to it once
when opened and once when resolved: a JSON body (the alerts-topic record, :class:`Alert`) with

    X-Vreserve-Timestamp: <unix seconds>
    X-Vreserve-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    X-Vreserve-Delivery: <alert id>|<webhook id>|<event>      (idempotency key for the receiver)

The receiver recomputes the HMAC with the shared secret (and may refuse old timestamps against
replays). A delivery that fails (connection error, timeout, non-2xx) is retried with exponential
backoff (5 s, 10 s, 20 s ... capped at 10 min) up to ``MAX_ATTEMPTS``; the last error is kept.
Deliveries are rows (``alert_deliveries``, migration 0084), so a restarted notifier goes on where it
stopped; a row is claimed with ``FOR UPDATE SKIP LOCKED``, so two notifiers never post it twice
at once. The secret is stored in the database, read from a file or stdin by the CLI (never argv),
and never printed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import psycopg

from vreserve.schemas.alerts import Alert

MAX_ATTEMPTS = 12
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: int, body: bytes, signature: str) -> bool:
    """For receivers (and tests): constant-time comparison."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_s(attempts: int, base_s: float = 5.0, cap_s: float = 600.0) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return min(cap_s, base_s * (2 ** max(0, attempts - 1)))


def check_url(url: str) -> str:
    if not (url.startswith("https://") or url.startswith("http://")) or len(url) > 2000 or not url.isprintable():
        raise ValueError("webhook url must be an http(s) URL of at most 2000 printable characters")
    return url


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    url: str
    min_severity: str
    active: bool
    created_by: str
    created_at: datetime


def add_webhook(conn: psycopg.Connection, webhook_id: str, url: str, secret: bytes, actor: str,
                min_severity: str = "critical") -> None:
    if not actor or not actor.strip():
        raise ValueError("registering a webhook needs an actor")
    if min_severity not in SEVERITY_RANK:
        raise ValueError(f"min_severity must be one of {', '.join(SEVERITY_RANK)}")
    if len(secret) < 16:
        raise ValueError("the webhook secret must be at least 16 bytes")
    conn.execute("INSERT INTO alert_webhooks (webhook_id, url, secret, min_severity, created_by)"
                 " VALUES (%s, %s, %s, %s, %s)", (webhook_id, check_url(url), secret, min_severity, actor.strip()))


def list_webhooks(conn: psycopg.Connection) -> list[Webhook]:
    rows = conn.execute("SELECT webhook_id, url, min_severity, active, created_by, created_at FROM alert_webhooks"
                        " ORDER BY webhook_id").fetchall()
    return [Webhook(*r) for r in rows]


def remove_webhook(conn: psycopg.Connection, webhook_id: str) -> bool:
    return conn.execute("DELETE FROM alert_webhooks WHERE webhook_id = %s", (webhook_id,)).rowcount > 0


#: New deliveries: alerts opened / resolved at or above each active webhook's severity, once.
ENQUEUE = """
INSERT INTO alert_deliveries (alert_id, webhook_id, event)
SELECT a.alert_id, w.webhook_id, e.event
FROM alerts a
JOIN alert_webhooks w ON w.active
     AND (CASE a.severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END)
         >= (CASE w.min_severity WHEN 'critical' THEN 2 WHEN 'warning' THEN 1 ELSE 0 END)
     AND a.at >= w.created_at - interval '1 day'
CROSS JOIN LATERAL (VALUES ('opened'), ('resolved')) AS e(event)
WHERE e.event = 'opened' OR a.resolved_at IS NOT NULL
ON CONFLICT DO NOTHING
"""

CLAIM = """
SELECT d.alert_id, d.webhook_id, d.event, d.attempts, w.url, w.secret,
       a.kind, a.severity, a.message, a.at, a.site_id, a.grid_cell, a.material_id, a.details, a.resolved_at
FROM alert_deliveries d
JOIN alert_webhooks w USING (webhook_id)
JOIN alerts a USING (alert_id)
WHERE d.delivered_at IS NULL AND d.next_attempt_at <= now() AND d.attempts < %(max)s AND w.active
ORDER BY d.next_attempt_at
LIMIT %(limit)s
FOR UPDATE OF d SKIP LOCKED
"""


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 10.0) -> None:
    """POST; raises on a connection error, a timeout or a non-2xx answer."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only (check_url)
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"HTTP {resp.status}")


@dataclass
class NotifyResult:
    enqueued: int = 0
    delivered: int = 0
    failed: int = 0          # attempts that failed this pass (retried later, up to MAX_ATTEMPTS)


def notify_once(conn: psycopg.Connection, send: Callable[[str, bytes, dict], None] = post,
                limit: int = 100, now: Callable[[], float] = time.time) -> NotifyResult:
    """Enqueue new deliveries, then try the due ones (each row locked while it is posted)."""
    res = NotifyResult()
    with conn.transaction():
        res.enqueued = conn.execute(ENQUEUE).rowcount
    with conn.transaction():
        rows = conn.execute(CLAIM, {"max": MAX_ATTEMPTS, "limit": limit}).fetchall()
        for (alert_id, webhook_id, event, attempts, url, secret, kind, severity, message, at, site, cell,
             material, details, resolved_at) in rows:
            alert = Alert(alert_id=alert_id, kind=kind, severity=severity, message=message, at=at, site_id=site,
                          grid_cell=cell, material_id=material, details=details or {},
                          resolved_at=resolved_at if event == "resolved" else None)
            body = json.dumps({"event": event, "alert": alert.to_payload()}, separators=(",", ":")).encode()
            ts = int(now())
            headers = {"X-Vreserve-Timestamp": str(ts), "X-Vreserve-Signature": sign(bytes(secret), ts, body),
                       "X-Vreserve-Delivery": f"{alert_id}|{webhook_id}|{event}"}
            try:
                send(url, body, headers)
            except Exception as exc:  # noqa: BLE001 - any failure of the receiver is retried
                res.failed += 1
                error = f"{type(exc).__name__}: {exc}"[:500]
                conn.execute("UPDATE alert_deliveries SET attempts = attempts + 1, last_error = %s,"
                             " next_attempt_at = now() + make_interval(secs => %s)"
                             " WHERE alert_id = %s AND webhook_id = %s AND event = %s",
                             (error, backoff_s(attempts + 1), alert_id, webhook_id, event))
                continue
            res.delivered += 1
            conn.execute("UPDATE alert_deliveries SET attempts = attempts + 1, delivered_at = now(), last_error = NULL"
                         " WHERE alert_id = %s AND webhook_id = %s AND event = %s", (alert_id, webhook_id, event))
    return res
