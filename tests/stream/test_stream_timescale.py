"""The TimescaleDB variants of the stream migrations and the same queries, on PGlite.

PGlite here is PostgreSQL 17 + TimescaleDB compiled to WebAssembly (npm), served over the wire
protocol; it allows one session at a time and runs no background jobs, so the policies' jobs are
run by hand with CALL run_job. Installing the npm packages is part of the test: if it fails, the
test fails with npm's message.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from stream import rollups
from stream.query import virtual_warehouse
from stream.records import StockReading
from stream.sink import write_batch
from stream_pglite import pglite_server
from vreserve.db import connect, migrate
from vreserve.schemas.common import utc_now

pytestmark = [pytest.mark.slow]


def test_timescale_migrations_policies_and_queries():
    with pglite_server() as dsn:
        applied = migrate(dsn)
        assert [m.path.name for m in applied if m.version in (20, 21)] == [
            "0020_stream_readings.timescale.sql", "0021_stream_state.sql"]
        assert migrate(dsn) == []  # idempotent
        with connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT variant FROM schema_migrations WHERE version = 20").fetchone()[0] == "timescale"
            assert conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall() == [
                ("stock_readings",)]
            assert conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates").fetchall() == [
                ("readings_hourly",)]
            jobs = dict(conn.execute("SELECT proc_name, job_id FROM timescaledb_information.jobs"
                                     " WHERE hypertable_name IS NOT NULL OR proc_name LIKE 'policy_refresh%'").fetchall())
            assert {"policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"} <= set(jobs)
            conn.execute("INSERT INTO materials VALUES ('mask', 'Masks', 'box', 'protective', true)")
            for site, cell in (("A", "G1"), ("B", "G1"), ("C", "G2")):
                conn.execute("INSERT INTO sites (site_id, name, owner_id, owner_kind, tier, region, grid_cell, lat, lon)"
                             " VALUES (%s, %s, 'o', 'enterprise', 'centralized', 'R', %s, 30, 114)", (site, site, cell))
                conn.execute("INSERT INTO site_materials VALUES (%s, 'mask', 100)", (site,))
            conn.execute("INSERT INTO safety_levels VALUES ('G2', 'mask', 500)")

        now = utc_now().replace(microsecond=0)
        old = now - timedelta(days=10)  # old enough for the 7-day compression policy
        ancient = now - timedelta(days=500)  # past the 400-day retention
        readings = [StockReading(s, "mask", q, "box", t, seq, now) for s, q, t, seq in (
            ("A", 70.0, old, 1), ("A", 60.0, old + timedelta(minutes=10), 2), ("B", 40.0, old, 1),
            ("A", 50.0, now - timedelta(minutes=1), 3), ("B", 30.0, now - timedelta(minutes=1), 2),
            ("C", 20.0, now - timedelta(minutes=1), 1), ("C", 99.0, ancient, 0))]

        async def write(batch):
            async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
                return await write_batch(conn, batch, [])

        async def checks():
            async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
                return await rollups.run_checks(conn, 30.0, 3, 10, (old, now))

        written = asyncio.run(write(readings))
        assert (written.history_rows, written.latest_rows) == (7, 3)
        result = asyncio.run(checks())
        assert result.ran and result.aggregate_rows == 4 and result.low_raised == 1  # 2 cells, 1 owner kind, 1 material

        with connect(dsn, autocommit=True) as conn:
            conn.execute("CALL run_job(%s)", (jobs["policy_refresh_continuous_aggregate"],))
            hourly = conn.execute(
                "SELECT bucket, grid_cell, qty, sites_reporting FROM stock_hourly_cell"
                " WHERE bucket = time_bucket(INTERVAL '1 hour', %s::timestamptz) ORDER BY grid_cell",
                (now - timedelta(minutes=1),)).fetchall()
            assert [(h[1], h[2], h[3]) for h in hourly] == [("G1", Decimal(80), 2), ("G2", Decimal(20), 1)]
            conn.execute("CALL run_job(%s)", (jobs["policy_compression"],))
            compressed = conn.execute("SELECT count(*) FROM timescaledb_information.chunks"
                                      " WHERE hypertable_name = 'stock_readings' AND is_compressed").fetchone()[0]
            assert compressed >= 1
            conn.execute("CALL run_job(%s)", (jobs["policy_retention"],))
            assert conn.execute("SELECT count(*) FROM stock_readings WHERE ts < %s", (now - timedelta(days=400),)).fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM stock_readings").fetchone()[0] == 6
            agg = conn.execute("SELECT dim_key, reported_qty, sites_reporting FROM stock_aggregates"
                               " WHERE dimension = 'grid_cell' ORDER BY dim_key").fetchall()
            assert agg == [("G1", Decimal(80), 2), ("G2", Decimal(20), 1)]

        # A replay of old readings into compressed chunks changes nothing.
        written = asyncio.run(write(readings[:3]))
        assert (written.history_rows, written.latest_rows) == (0, 0)

        with connect(dsn) as conn:
            rows = {r.grid_cell: r for r in virtual_warehouse(conn)}
            assert rows["G1"].reported_qty == 80 and rows["G1"].contracted_qty == 200
            assert rows["G2"].available_qty == Decimal(20 - 500)
            past = {r.grid_cell: r for r in virtual_warehouse(conn, at=old + timedelta(minutes=30))}
            assert past["G1"].reported_qty == 100  # A's 60 and B's 40, read from compressed chunks
            assert conn.execute("SELECT count(*) FROM alerts WHERE kind = 'low_stock' AND grid_cell = 'G2'").fetchone()[0] == 1
