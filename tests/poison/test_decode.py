"""The one safe decoder (vreserve.decode), pure: every way a record can be bad is a SchemaError with a
reason, never another exception; good records decode exactly as before."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from ingest.validate import KnownRegistry, Rejected, validate_message
from vreserve.decode import MAX_DEPTH, decode_json, preview, safe_text
from vreserve.schemas.audits import AuditRecord
from vreserve.schemas.common import SchemaError, parse_ts, utc_now
from vreserve.schemas.dispatch import DemandUpdate, ModeEvent, OrderStatus, decode_dispatch_record
from vreserve.schemas.readings import ReadingBatch, StockReport

DEEP = b"[" * 5000 + b"]" * 5000
AUDIT = {"v": 1, "audit_id": "A-1", "site_id": "S1", "auditor": "inspector-7", "at": "2026-11-22T08:00:00.000Z",
         "counts": [{"material": "masks", "counted_qty": 800, "unit": "box"}]}


@pytest.mark.parametrize("decoder", [ModeEvent.from_json, OrderStatus.from_json, DemandUpdate.from_json,
                                     AuditRecord.from_json, ReadingBatch.from_json, StockReport.from_json,
                                     decode_dispatch_record])
@pytest.mark.parametrize("raw", [DEEP, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"\xff\xfe\x00junk",
                                 b"[" * 200_000, b'{"v":1,"reason":"a\\u0000b"}'])
def test_issue_records_are_rejections_not_crashes(decoder, raw):
    """The records of issue 10 (RecursionError, NUL, invalid UTF-8) are ordinary rejections."""
    with pytest.raises(SchemaError):
        decoder(raw)


def test_nul_in_any_text_value_or_key_is_rejected():
    with pytest.raises(SchemaError, match="NUL"):
        AuditRecord.from_json(json.dumps({**AUDIT, "auditor": "insp\u0000ector"}))
    with pytest.raises(SchemaError, match="NUL"):
        decode_json(b'{"a":[{"b\\u0000":1}]}', "record")
    assert AuditRecord.from_json(json.dumps(AUDIT)).auditor == "inspector-7"
    # an escaped backslash followed by "u0000" is no NUL: accepted
    assert decode_json(b'{"a":"\\\\u0000"}', "record") == {"a": "\\u0000"}


def test_size_is_checked_before_parsing_and_depth_is_bounded():
    with pytest.raises(SchemaError, match="byte limit"):
        decode_json(b"[" * 100, "record", max_bytes=99)
    nested = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert decode_json(nested, "record") is not None
    with pytest.raises(SchemaError, match="deeper than"):
        decode_json(b"[" + nested + b"]", "record")


def test_timestamp_out_of_range_in_utc_is_a_rejection():
    """0001-01-01T00:00:00+14:00 is before year 1 in UTC: an OverflowError on old code."""
    with pytest.raises(SchemaError, match="out of range"):
        parse_ts("0001-01-01T00:00:00+14:00")


def test_bridge_rejects_deep_nesting_as_schema():
    known = KnownRegistry(frozenset({"S1"}), {"medicine": "box"})
    with pytest.raises(Rejected) as err:
        validate_message("vr/v1/sites/S1/stock", DEEP, known, utc_now())
    assert err.value.kind == "schema"


def test_safe_text_and_preview_are_storable():
    for text in (safe_text("a\x00b\ud800c"), preview(b"\xff\x00ok"), preview(DEEP, 10)):
        text.encode("utf-8")  # no lone surrogate left
        assert "\x00" not in text
    assert preview(b"\xff\x00ok") == "\\xff\\x00ok"


@hsettings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_schema_error(raw):
    try:
        decode_json(raw, "record")
    except SchemaError as exc:
        assert str(exc)


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
                       | st.text().filter(lambda s: "\x00" not in s),
                       lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
                           st.text(max_size=10).filter(lambda s: "\x00" not in s), inner, max_size=5), max_leaves=30)


@hsettings(max_examples=300, deadline=None, database=None)
@given(_values)
def test_good_json_decodes_exactly_as_pythons_json(value):
    raw = json.dumps(value).encode()
    assert decode_json(raw, "record") == json.loads(raw)


class _BrokenSites(frozenset):
    """A registry snapshot whose lookup raises: stands for any bug in the bridge's validation."""

    def __contains__(self, item):
        raise RuntimeError("lookup broke")


def test_bridge_dead_letters_a_message_that_breaks_its_validator():
    """Last line of defence on the bridge: never an unacknowledged message redelivered forever."""
    from types import SimpleNamespace

    from ingest.bridge import Bridge, BridgeConfig
    from vreserve.schemas.readings import DeadLetter
    from vreserve.settings import Settings

    bridge = Bridge(Settings(topic_prefix="unit."), BridgeConfig(client_id="unit"),
                    known=KnownRegistry(_BrokenSites({"S1"}), {"medicine": "box"}))
    payload = json.dumps({"v": 1, "site_id": "S1", "ts": "2026-11-30T00:00:00Z", "seq": 1,
                          "readings": [{"material": "medicine", "qty": 1, "unit": "box"}]}).encode()
    msg = SimpleNamespace(topic="vr/v1/sites/S1/stock", payload=payload, qos=1, mid=7, dup=False, retain=False)
    topic, key, value, _done = bridge._prepare(msg)
    letter = DeadLetter.from_json(value)
    assert topic == "unit.readings.dead-letter" and key == b"S1" and letter.payload == payload
    assert "could not validate" in letter.reason and "lookup broke" in letter.reason
    assert letter.context["kind"] == "internal"
