"""A device that restarts its seq after a reboot (issue 11): with the contract's `boot` counter the
new readings are taken in order and a ``device_restart`` alert says so; without it, the readings
are ignored as older (the order says so) but a ``seq_regression`` alert makes it visible."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from stream_helpers import add_registry

from stream.records import StockReading, parse_batch
from stream.sink import write_batch
from stream.state import Outcome, apply_reading
from vreserve.db import connect
from vreserve.schemas.common import SchemaError, format_ts, utc_now
from vreserve.schemas.readings import StockReport

T0 = utc_now().replace(microsecond=0) - timedelta(minutes=2)


def _reading(seq: int, boot: int, qty: float, dt: float) -> StockReading:
    return StockReading("S1", "mask", qty, "box", T0 + timedelta(seconds=dt), seq, T0, boot=boot)


def test_boot_counter_orders_a_restarted_sequence_and_both_cases_are_signalled():
    held = apply_reading(None, _reading(51234, 0, 80.0, 0), 0.5).held
    without = apply_reading(held, _reading(1, 0, 20.0, 60), 0.5)
    assert without.outcome is Outcome.STALE and without.held == held
    assert without.restart.kind == "seq_regression" and "seq went back from 51234 to 1" in without.restart.message
    withboot = apply_reading(held, _reading(1, 1, 20.0, 60), 0.5)
    assert withboot.outcome is Outcome.NEWER and withboot.held["qty"] == 20.0 and withboot.held["boot"] == 1
    assert withboot.restart.kind == "device_restart" and withboot.restart.severity == "info"
    # an out-of-order or duplicate reading (older ts) is no restart: no signal
    late = apply_reading(held, _reading(51233, 0, 81.0, -10), 0.5)
    assert late.outcome is Outcome.STALE and late.restart is None
    # a state held before `boot` existed counts as boot 0
    legacy = {k: v for k, v in held.items() if k != "boot"}
    assert apply_reading(legacy, _reading(1, 2, 20.0, 60), 0.5).outcome is Outcome.NEWER


def test_boot_is_an_optional_strict_contract_field():
    base = {"v": 1, "site_id": "S1", "ts": format_ts(T0), "seq": 1,
            "readings": [{"material": "mask", "qty": 1, "unit": "box"}]}
    assert StockReport.from_json(json.dumps(base)).boot == 0
    report = StockReport.from_json(json.dumps({**base, "boot": 3}))
    assert report.boot == 3 and json.loads(report.to_json())["boot"] == 3
    for bad in (-1, "3", True, 1.5):
        with pytest.raises(SchemaError, match="boot must be a non-negative integer"):
            StockReport.from_json(json.dumps({**base, "boot": bad}))


def test_live_stock_follows_a_rebooted_device(settings, unique):
    site = f"{unique}-S"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {"mask": "box"}, {})
    before = StockReading(site, "mask", 80.0, "box", T0, 51234, T0)
    after = StockReading(site, "mask", 20.0, "box", T0 + timedelta(seconds=60), 1, T0, boot=1)

    async def write(batches):
        async with await psycopg.AsyncConnection.connect(settings.pg_dsn, prepare_threshold=None,
                                                         autocommit=True) as conn:
            for b in batches:
                await write_batch(conn, b, [])
    asyncio.run(write([[before], [after], [before]]))
    with connect(settings.pg_dsn) as conn:
        live = conn.execute("SELECT qty, seq, boot FROM stock_latest WHERE site_id = %s", (site,)).fetchone()
        history = conn.execute("SELECT count(*) FROM stock_readings WHERE site_id = %s", (site,)).fetchone()[0]
    assert live == (Decimal(20), 1, 1), "live stock kept the value from before the reboot"
    assert history == 2


def test_parse_batch_carries_the_boot_counter():
    raw = json.dumps({"v": 1, "site_id": "S1", "ts": format_ts(T0), "seq": 1, "boot": 4,
                      "readings": [{"material": "mask", "qty": 1, "unit": "box"}],
                      "received_at": format_ts(T0), "mqtt_topic": "vr/v1/sites/S1/stock"}).encode()
    assert [r.boot for r in parse_batch(raw, b"S1")] == [4]
