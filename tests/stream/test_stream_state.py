"""Pure logic: ordering by (seq, ts), duplicates, replays, jump alerts, record parsing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from stream.loadgen import reading_batch
from stream.records import StockReading, parse_batch
from stream.state import Outcome, apply_reading
from vreserve.schemas.alerts import Alert
from vreserve.schemas.common import SchemaError

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def r(seq: int, qty: float, dt: int = 0, site: str = "S1", material: str = "mask") -> StockReading:
    return StockReading(site, material, qty, "box", T0 + timedelta(seconds=dt if dt else seq * 10), seq, T0)


def fold(readings, share=0.5):
    held, alerts, outcomes = None, [], []
    for x in readings:
        a = apply_reading(held, x, share)
        held = a.held
        outcomes.append(a.outcome)
        if a.jump:
            alerts.append(a.jump)
    return held, alerts, outcomes


def test_newer_moves_forward_and_older_is_ignored():
    held, _, outcomes = fold([r(1, 100), r(3, 90), r(2, 10), r(3, 90)])
    assert held["seq"] == 3 and held["qty"] == 90
    assert outcomes == [Outcome.NEW, Outcome.NEWER, Outcome.STALE, Outcome.REPLAY]


def test_ties_on_seq_are_ordered_by_ts():
    held, _, _ = fold([r(5, 10, dt=100), r(5, 12, dt=200), r(5, 11, dt=150)])
    assert held["qty"] == 12


def test_same_result_in_any_arrival_order():
    readings = [r(i, 100 - i) for i in range(1, 8)]
    forward, _, _ = fold(readings)
    backward, _, _ = fold(list(reversed(readings)) + readings[:3])
    assert forward["seq"] == backward["seq"] == 7 and forward["qty"] == backward["qty"]


def test_jump_alert_is_deterministic_and_rederived_on_replay():
    held, alerts, _ = fold([r(1, 100), r(2, 95), r(3, 20)])
    assert [a.alert_id for a in alerts] == ["jump:S1:mask:3"]
    a = alerts[0]
    assert a.kind == "jump" and a.details["prev_qty"] == 95 and a.details["qty"] == 20
    assert "fell from 95 to 20 box" in a.message
    # The held reading processed again (crash after changelog, before commit): same alert again.
    again = apply_reading(held, r(3, 20), 0.5)
    assert again.outcome is Outcome.REPLAY and again.jump == a
    # A conflicting duplicate (same seq and ts, other qty) changes nothing.
    conflict = apply_reading(held, r(3, 77), 0.5)
    assert conflict.outcome is Outcome.STALE and conflict.held == held and conflict.jump is None


def test_jump_threshold_and_floor():
    _, alerts, _ = fold([r(1, 100), r(2, 150)], share=0.5)  # exactly 50 %: not above
    assert alerts == []
    _, alerts, _ = fold([r(1, 0), r(2, 0.4)], share=0.5)  # floor of one unit: 40 %
    assert alerts == []
    _, alerts, _ = fold([r(1, 0), r(2, 3)], share=0.5)
    assert len(alerts) == 1 and "rose" in alerts[0].message


def test_alert_record_round_trips():
    _, alerts, _ = fold([r(1, 100), r(2, 10)])
    a = alerts[0]
    assert Alert.from_json(a.to_json()) == a
    with pytest.raises(SchemaError):
        Alert.from_json(b'{"v": 1, "alert_id": "x"}')


def test_parse_batch_flattens_and_checks_key():
    b = reading_batch("S9", 4, T0, {"mask": (12.0, "box"), "water": (3.5, "l")})
    rows = parse_batch(b.to_json(), b"S9")
    assert [(x.site_id, x.material_id, x.qty, x.unit, x.seq) for x in rows] == [
        ("S9", "mask", 12.0, "box", 4), ("S9", "water", 3.5, "l", 4)]
    with pytest.raises(SchemaError, match="differs from site_id"):
        parse_batch(b.to_json(), b"S8")
    with pytest.raises(SchemaError, match="not valid JSON"):
        parse_batch(b"{nope", b"S9")
    with pytest.raises(SchemaError, match="tombstone"):
        parse_batch(None, b"S9")
    with pytest.raises(SchemaError, match="negative"):
        parse_batch(b.to_json().replace(b"12.0", b"-1"), b"S9")
