"""Validation rules of the bridge, one by one (pure: no services)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ingest.validate import KnownRegistry, Rejected, validate_message

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
KNOWN = KnownRegistry(sites=frozenset({"S1", "S2"}), material_units={"medicine": "box", "pork": "kg"})
TOPIC = "vr/v1/sites/S1/stock"


def payload(**over) -> bytes:
    body = {"v": 1, "site_id": "S1", "ts": "2026-11-22T07:59:59.000Z", "seq": 5,
            "readings": [{"material": "medicine", "qty": 10, "unit": "box"}]}
    body.update(over)
    return json.dumps(body).encode()


def test_valid_message_is_accepted() -> None:
    report = validate_message(TOPIC, payload(), KNOWN, NOW)
    assert report.site_id == "S1" and report.seq == 5 and report.readings[0].qty == 10.0


@pytest.mark.parametrize(
    "topic, raw, kind, reason",
    [
        (TOPIC, b'{"v":1,"site_id":"S1","ts":"2026-', "schema", "not valid JSON"),
        (TOPIC, b"\xff\xfe\x00junk", "schema", "not UTF-8"),
        (TOPIC, b"[1,2]", "schema", "must be a JSON object"),
        (TOPIC, payload(seq="7"), "schema", "seq must be a non-negative integer"),
        (TOPIC, payload(readings=[{"material": "medicine", "qty": "ten", "unit": "box"}]), "schema", "qty must be a number"),
        (TOPIC, payload().replace(b'"qty": 10', b'"qty": NaN'), "schema", "non-finite number NaN"),
        (TOPIC, payload(readings=[{"material": "medicine", "qty": -1, "unit": "box"}]), "schema", "negative"),
        (TOPIC, payload(extra=1), "schema", "unknown field"),
        (TOPIC, payload(v=2), "schema", "unsupported payload version"),
        (TOPIC, payload(ts="yesterday"), "schema", "not an RFC 3339"),
        (TOPIC, payload(site_id="S2"), "site_mismatch", "differs from the topic's site"),
        ("vr/v1/sites/S9/stock", payload(site_id="S9"), "unknown_site", "unknown site 'S9'"),
        (TOPIC, payload(readings=[{"material": "gold", "qty": 1, "unit": "g"}]), "unknown_material", "unknown material 'gold'"),
        (TOPIC, payload(readings=[{"material": "pork", "qty": 1, "unit": "box"}]), "unit", "catalogue counts it in 'kg'"),
        (TOPIC, payload(ts=(NOW + timedelta(hours=1)).isoformat()), "timestamp", "in the future"),
        (TOPIC, payload(ts=(NOW - timedelta(days=40)).isoformat()), "timestamp", "older than 30 days"),
        (TOPIC, b"x" * 70_000, "size", "exceeds the 65536 byte limit"),
        ("vr/v1/sites/S1/status", payload(), "topic", "is not vr/v1/sites"),
    ],
)
def test_rejections_carry_a_reason(topic: str, raw: bytes, kind: str, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        validate_message(topic, raw, KNOWN, NOW)
    assert err.value.kind == kind
    assert reason in err.value.reason
