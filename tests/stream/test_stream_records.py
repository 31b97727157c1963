"""The worker's shape check (parse_record) against the strict contract (parse_batch): every bad
record of the fuzz kinds is refused with a reason, and a good record gives the same rows."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from stream.loadgen import reading_batch
from stream.records import _checked_record, _fast_record, parse_batch, parse_record
from stream.sink import Rows
from tests.poison.fuzz import Template, bad_record
from vreserve import topics
from vreserve.schemas.common import SchemaError, format_ts
from vreserve.schemas.readings import MAX_READINGS_RECORD_BYTES

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
RECORD = {"v": 1, "site_id": "S1", "ts": format_ts(T0), "seq": 3,
          "readings": [{"material": "mask", "qty": 1.0, "unit": "box"}],
          "received_at": format_ts(T0), "mqtt_topic": topics.mqtt_stock_topic("S1")}
TEMPLATE = Template(RECORD, ("site_id", "ts", "received_at", "mqtt_topic"),
                    ("v", "site_id", "ts", "seq", "readings", "received_at", "mqtt_topic"),
                    MAX_READINGS_RECORD_BYTES, unknown_fields_ignored=True)


@hsettings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(bad_record(TEMPLATE))
def test_every_bad_record_is_refused_with_a_reason(record):
    kind, raw = record
    with pytest.raises(SchemaError) as strict:
        parse_batch(raw, b"S1")
    with pytest.raises(SchemaError) as shape:
        parse_record(raw, b"S1")
    assert str(shape.value) and str(strict.value)


@hsettings(max_examples=200, deadline=None, derandomize=True)
@given(seq=st.integers(0, 2 ** 40), boot=st.integers(0, 2 ** 40), ms=st.integers(0, 10 ** 9),
       qtys=st.lists(st.floats(0, 1e12, allow_nan=False), min_size=1, max_size=12))
def test_a_good_record_gives_the_strict_parse_rows(seq, boot, ms, qtys):
    ts = T0 + timedelta(milliseconds=ms)
    batch = reading_batch("S1", seq, ts, {f"m{i}": (q, "box") for i, q in enumerate(qtys)}, T0)
    body = json.loads(batch.to_json())
    body["boot"] = boot
    raw = json.dumps(body).encode()
    strict = parse_batch(raw, b"S1")
    record = parse_record(raw, b"S1")
    assert record.readings() == strict
    assert Rows.of_records([record]).copy_text == Rows.of_readings(strict).copy_text


def test_timestamps_not_in_the_bridge_form_are_normalised():
    body = {**RECORD, "ts": "2026-11-22T09:00:00+01:00", "received_at": "2026-11-22T08:00:00.5Z"}
    record = parse_record(json.dumps(body).encode(), None)
    assert record.ts_text == "2026-11-22T08:00:00.000Z" and record.received_text == "2026-11-22T08:00:00.500Z"
    assert record.readings() == parse_batch(json.dumps(body).encode(), None)


@pytest.mark.parametrize("change, reason", [
    ({"seq": True}, "seq must be"), ({"boot": -1}, "boot must be"), ({"site_id": "S\x1f1"}, "control"),
    ({"readings": [{"material": "a", "qty": 1, "unit": "box"}] * 2}, "listed twice"),
    ({"readings": [{"material": "a", "qty": -1, "unit": "box"}]}, "negative"),
    ({"v": 2}, "version"), ({"site_id": "S2"}, "differs from site_id"),
])
def test_shape_check_reasons(change, reason):
    with pytest.raises(SchemaError, match=reason):
        parse_record(json.dumps({**RECORD, **change}).encode(), b"S1")


@hsettings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 4), st.sampled_from([1.0, 2.0])),
                min_size=1, max_size=12))
def test_fold_record_moves_state_and_alerts_as_apply_reading(steps):
    """The worker's batch fold (fast path inline) equals the pure fold reading by reading."""
    from stream.records import Item, ReadingRecord
    from stream.state import FoldCounts, Outcome, apply_reading, fold_record

    states: dict = {}
    held, want_alerts, got_alerts, counts = None, [], [], FoldCounts()
    for boot, seq, dt, qty in steps:
        ts = T0 + timedelta(seconds=dt)
        record = ReadingRecord("S1", ts, format_ts(ts), seq, boot, format_ts(T0), [Item("mask", qty, "box")])
        applied = apply_reading(held, record.reading(0))
        if applied.outcome in (Outcome.NEW, Outcome.NEWER):
            held = applied.held
        want_alerts += [a for a in (applied.restart,) if a is not None]
        fold_record(states, record, got_alerts, counts)
    keep = ("qty", "unit", "ts", "seq", "boot")
    assert {k: states["mask"][k] for k in keep} == {k: held[k] for k in keep}
    assert got_alerts == want_alerts


def _raw(**changes) -> bytes:
    body = {**RECORD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not _DROP}, separators=(",", ":"),
                      ensure_ascii=False).encode()


_DROP = object()


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value

ITEM = RECORD["readings"][0]
#: records without any escape (the fast pass's input) that the Python checks refuse
NO_ESCAPE_BAD = [
    _raw(v=1.0), _raw(v=True), _raw(v=2), _raw(seq=3.0), _raw(seq=-1), _raw(seq=2 ** 63), _raw(boot=None),
    _raw(boot=2 ** 62), _raw(site_id=""), _raw(site_id="S" * 129), _raw(site_id="S2"), _raw(readings=[]),
    _raw(readings=[ITEM, ITEM]), _raw(readings=[{**ITEM, "qty": -1.0}]), _raw(readings=[{**ITEM, "qty": True}]),
    _raw(readings=[{**ITEM, "qty": "1"}]), _raw(readings=[{**ITEM, "unit": "u" * 33}]),
    _raw(readings=[{**ITEM, "material": ""}]), _raw(readings=[{**ITEM, "material": None}]),
    _raw(readings=[{**ITEM, "qty": 1e308}]).replace(b"1e+308", b"1e999"), _raw(ts="yesterday"),
    _raw(received_at=5), _raw(mqtt_topic=None), _raw(mqtt_topic=_DROP), _raw(seq=_DROP),
    _raw(x=_nested(40)),
    _raw(readings=[{**ITEM, "x": {"a": _nested(38)}}]),
    _raw(readings=[ITEM] * 501), _raw() + b" x", _raw()[:-1], _raw(site_id="S1\x1f"),
]


@pytest.mark.parametrize("raw", NO_ESCAPE_BAD)
def test_the_compiled_pass_accepts_nothing_the_python_checks_refuse(raw):
    with pytest.raises(SchemaError) as checked:
        _checked_record(raw, b"S1")
    try:
        assert _fast_record(raw, b"S1") is None  # left to the Python checks
    except SchemaError as exc:  # or refused for the same reason (the timestamps are checked alike)
        assert str(exc) == str(checked.value)
    with pytest.raises(SchemaError) as parsed:
        parse_record(raw, b"S1")
    assert str(parsed.value) == str(checked.value)


@pytest.mark.parametrize("raw", [_raw(), _raw(boot=7, x="unknown fields are ignored"), _raw(site_id="Ü" * 128), _raw(seq=2 ** 63 - 1),
                                 _raw(readings=[{**ITEM, "qty": 2}]), _raw(ts="2026-11-22T09:00:00+01:00")])
def test_the_compiled_pass_gives_what_the_python_checks_give(raw):
    key = json.loads(raw)["site_id"].encode()
    fast, checked = _fast_record(raw, key), _checked_record(raw, key)
    assert fast is not None and fast.plain and not checked.plain
    assert fast.readings() == checked.readings()
    assert Rows.of_records([fast]).copy_text == Rows.of_records([checked]).copy_text
