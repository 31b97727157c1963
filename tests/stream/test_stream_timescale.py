"""The TimescaleDB variant on the real server: hypertable, continuous aggregate, compression and
retention policies, and the worker's sink and queries over compressed chunks.

The session database has the TimescaleDB variant whenever the server can load the extension (the
local runner builds and preloads it). A session run with ``--db-variant plain`` skips these; a
server that cannot load it fails them: the project's tests are meant to run on TimescaleDB.
"""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from stream import rollups
from stream.query import site_history, virtual_warehouse
from stream.records import StockReading
from stream.sink import write_batch
from stream_helpers import add_registry
from vreserve.db import connect
from vreserve.schemas.common import utc_now

pytestmark = [pytest.mark.services]


@pytest.fixture
def tsdb(settings, db_variant, requested_db_variant):
    """The session's settings, on the TimescaleDB variant (see the module docstring)."""
    if db_variant.name != "timescale":
        if requested_db_variant == "plain":
            pytest.skip("this session runs the plain variant (--db-variant plain)")
        pytest.fail(f"the tests run on TimescaleDB by default, but the session database is plain: {db_variant.reason}")
    return settings


def test_schema_is_a_hypertable_with_its_policies(tsdb):
    with connect(tsdb.pg_dsn, autocommit=True) as conn:
        variants = dict(conn.execute("SELECT version, variant FROM schema_migrations WHERE version IN (20, 24)").fetchall())
        assert variants == {20: "timescale", 24: "timescale"}
        assert conn.execute("SHOW timescaledb.telemetry_level").fetchone()[0] == "off"
        [(interval,)] = conn.execute("SELECT time_interval FROM timescaledb_information.dimensions"
                                     " WHERE hypertable_name = 'stock_readings'").fetchall()
        assert interval == timedelta(days=1)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'stock_readings'")}
        assert indexes == {"stock_readings_pkey", "stock_readings_ts_brin"}  # no B-tree on ts to pay for per reading
        settings = conn.execute(
            "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc"
            " FROM timescaledb_information.compression_settings WHERE hypertable_name = 'stock_readings'"
            " ORDER BY attname").fetchall()
        assert settings == [("material_id", 2, None, None), ("site_id", 1, None, None), ("ts", None, 1, False)]
        assert conn.execute("SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
                            ).fetchall() == [("readings_hourly", False)]
        jobs = {r[0]: r[1] for r in conn.execute(
            "SELECT proc_name, config FROM timescaledb_information.jobs WHERE proc_name LIKE 'policy_%'")}
        assert jobs["policy_compression"]["compress_after"] == "7 days"
        assert jobs["policy_retention"]["drop_after"] == "400 days"
        assert jobs["policy_refresh_continuous_aggregate"]["start_offset"] == "31 days"


async def _write(dsn, batch):
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await write_batch(conn, batch, [])


def _run_job(conn, proc: str, hypertable: str | None = "stock_readings") -> None:
    where = "proc_name = %s" + (" AND hypertable_name = %s" if hypertable else "")
    args = (proc, hypertable) if hypertable else (proc,)
    [(job_id,)] = conn.execute(f"SELECT job_id FROM timescaledb_information.jobs WHERE {where}", args).fetchall()
    deadline = time.monotonic() + 60
    while True:  # the server's own scheduler may be running the same job right now
        try:
            conn.execute("CALL run_job(%s)", (job_id,))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_policies_compress_refresh_and_drop_and_queries_read_compressed_chunks(tsdb, unique):
    dsn = tsdb.pg_dsn
    cell, mat = f"{unique}-G", f"{unique}-mask"
    a, b = f"{unique}-A", f"{unique}-B"
    add_registry(dsn, [(a, cell, "government"), (b, cell, "ngo")], {mat: "box"}, {(a, mat): 100, (b, mat): 100})
    now = utc_now().replace(microsecond=0)
    old = (now - timedelta(days=10)).replace(minute=5, second=0)  # past the 7-day compression policy
    ancient = now - timedelta(days=500)  # past the 400-day retention
    readings = [StockReading(s, mat, q, "box", t, seq, now) for s, q, t, seq in (
        (a, 70.0, old, 1), (a, 60.0, old + timedelta(minutes=10), 2), (b, 40.0, old, 1),
        (a, 50.0, now - timedelta(minutes=1), 3), (b, 30.0, now - timedelta(minutes=1), 2),
        (a, 99.0, ancient, 0))]
    written = asyncio.run(_write(dsn, readings))
    assert (written.history_rows, written.latest_rows) == (6, 2)

    with connect(dsn, autocommit=True) as conn:
        _run_job(conn, "policy_refresh_continuous_aggregate", hypertable=None)
        _run_job(conn, "policy_compression")
        _run_job(conn, "policy_retention")
        chunks = conn.execute("SELECT range_start, is_compressed FROM timescaledb_information.chunks"
                              " WHERE hypertable_name = 'stock_readings' AND range_start <= %s AND range_end > %s",
                              (old, old)).fetchall()
        assert [c[1] for c in chunks] == [True]
        assert conn.execute("SELECT count(*) FROM stock_readings WHERE site_id = %s AND ts < %s",
                            (a, now - timedelta(days=400))).fetchone()[0] == 0
        [(table,)] = conn.execute(
            "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = 'readings_hourly'").fetchall()
        materialized = conn.execute(f"SELECT count(*) FROM {table} WHERE site_id = %s", (a,)).fetchone()[0]
        assert materialized == 1  # old's hour (the last hour is left to real-time aggregation)

    # A replay into the compressed chunk changes nothing.
    assert asyncio.run(_write(dsn, readings[:3])).history_rows == 0

    with connect(dsn) as conn:
        [row] = virtual_warehouse(conn, grid=cell)
        assert row.reported_qty == 80
        # at's own hour: raw rows from the compressed chunk; two hours later: the aggregate's rows
        [same_hour] = virtual_warehouse(conn, grid=cell, at=old + timedelta(minutes=30))
        [later] = virtual_warehouse(conn, grid=cell, at=old + timedelta(hours=2))
        assert same_hour.reported_qty == later.reported_qty == 100 and later.sites_reporting == 2
        history = site_history(conn, a, until=now + timedelta(hours=1))
        assert [(h.bucket, h.qty_last, h.qty_min, h.qty_max, h.readings, h.unit) for h in history] == [
            (old.replace(minute=0), Decimal(60), Decimal(60), Decimal(70), 2, "box"),
            ((now - timedelta(minutes=1)).replace(minute=0, second=0), Decimal(50), Decimal(50), Decimal(50), 1, "box")]
        hourly = conn.execute("SELECT qty, sites_reporting FROM stock_hourly_cell WHERE grid_cell = %s AND bucket = %s",
                              (cell, old.replace(minute=0))).fetchone()
        assert hourly == (Decimal(100), 2)

    async def checks():
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await rollups.run_checks(conn, 30.0, 3, 10, (old, now))
    assert asyncio.run(checks()).ran  # the worker's periodic SQL runs on the TimescaleDB schema
