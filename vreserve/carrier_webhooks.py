"""The carrier webhook contract, shared by the sender (api/webhooks.py, `vreserve carrier-webhooks run`)
and receivers (the simulated logistics company's webhook mode, simulators/logistics_webhook.py).

A delivery is ``POST <url>`` with the JSON envelope ``{"event", "delivery_id", "idempotency_key",
"record"}`` (``record`` = the dispatch-orders topic record, unchanged) and the headers::

    X-VR-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
    X-VR-Event: order | supersede | cancel
    Idempotency-Key: <event>:<order id>

A receiver recomputes the MAC over the raw body and refuses a timestamp more than
``REPLAY_WINDOW_S`` from its clock (a captured request replayed later is refused); the order id is
the idempotency key (a redelivery must be handled once).
"""
from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-VR-Signature"
EVENT_HEADER = "X-VR-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: A receiver refuses signatures older (or newer) than this, in seconds.
REPLAY_WINDOW_S = 300


def sign(secret: str, body: bytes, ts: int | None = None) -> str:
    """The signature header's value for ``body`` sent at ``ts`` (now by default)."""
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, now: float | None = None,
                     window_s: int = REPLAY_WINDOW_S) -> bool:
    """What a carrier runs on receipt: the MAC matches and the timestamp is fresh."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > window_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), header)
