"""Two readings of one site and material with the same timestamp are both kept in the history
(issue 11: the key was (site, material, ts), so the second was dropped while live stock took the
higher seq, and `stock --at` disagreed with live stock)."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import psycopg
from stream_helpers import add_registry

from stream.query import LATEST_AT, STOCK_AT_LOOKBACK
from stream.records import StockReading
from stream.sink import write_batch
from vreserve.db import connect
from vreserve.schemas.common import utc_now


async def _write(dsn, batches):
    async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
        for b in batches:
            await write_batch(conn, b, [])


def test_same_second_readings_both_kept_and_history_agrees_with_live(settings, unique):
    site = f"{unique}-S"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {"mask": "box"}, {})
    ts = utc_now().replace(microsecond=0) - timedelta(seconds=5)
    first = StockReading(site, "mask", 40.0, "box", ts, 41, ts)
    second = StockReading(site, "mask", 12.0, "box", ts, 42, ts)  # same second, picked in between
    for batches in ([[first], [second]], [[second, first], [first]]):  # apart, together, replayed
        asyncio.run(_write(settings.pg_dsn, batches))
    with connect(settings.pg_dsn) as conn:
        history = conn.execute("SELECT seq, qty FROM stock_readings WHERE site_id = %s ORDER BY seq",
                               (site,)).fetchall()
        live = conn.execute("SELECT qty, seq FROM stock_latest WHERE site_id = %s", (site,)).fetchone()
        at = [r for r in conn.execute(LATEST_AT, {"at": ts + timedelta(seconds=1), "lookback": STOCK_AT_LOOKBACK}).fetchall() if r[0] == site]
    assert history == [(41, Decimal(40)), (42, Decimal(12))], "a reading was lost from the history"
    assert live == (Decimal(12), 42)
    assert [r[2] for r in at] == [Decimal(12)], "stock --at disagrees with live stock"
