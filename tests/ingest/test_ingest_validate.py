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
        (TOPIC, payload(**{f"x{i}": i for i in range(17)}), "schema", "17 unknown fields (at most 16"),
        (TOPIC, payload(received_at="x"), "schema", "field name(s) not allowed: received_at"),
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


def test_unknown_fields_are_kept_and_forwarded_known_ones_stay_strict() -> None:
    """Versioning rule of contract v1: a vendor's extra field does not get a report dead-lettered."""
    from vreserve.schemas.readings import ReadingBatch

    raw = payload(battery_pct=81, readings=[{"material": "medicine", "qty": 10, "unit": "box", "sensor": "shelf-2"}])
    report = validate_message(TOPIC, raw, KNOWN, NOW)
    assert report.extra == {"battery_pct": 81} and report.readings[0].extra == {"sensor": "shelf-2"}
    forwarded = json.loads(ReadingBatch(report, NOW, TOPIC).to_json())
    assert forwarded["battery_pct"] == 81 and forwarded["readings"][0]["sensor"] == "shelf-2"
    with pytest.raises(Rejected, match="qty must be a number"):
        validate_message(TOPIC, payload(battery_pct=81, readings=[{"material": "medicine", "qty": "10", "unit": "box"}]),
                         KNOWN, NOW)


@pytest.mark.parametrize("qos, retained, kind", [(0, False, "qos"), (1, True, "retained"), (0, True, "qos")])
def test_qos_0_and_retained_replays_are_refused_with_a_reason(qos: int, retained: bool, kind: str) -> None:
    with pytest.raises(Rejected) as err:
        validate_message(TOPIC, payload(), KNOWN, NOW, qos=qos, retained=retained)
    assert err.value.kind == kind and ("QoS 1" in err.value.reason or "retain=false" in err.value.reason)
    assert validate_message(TOPIC, payload(), KNOWN, NOW, qos=1, retained=False).seq == 5
