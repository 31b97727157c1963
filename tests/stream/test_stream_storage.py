"""The sink, the periodic checks and the query side against the real PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from stream_helpers import add_registry
from stream import rollups
from stream.query import site_history, virtual_warehouse
from stream.records import StockReading
from stream.sink import write_batch
from vreserve.cli import cli
from vreserve.db import connect
from vreserve.schemas.common import utc_now




def readings_for(sites, materials, seqs, t0, qty=lambda s, m, q: 100.0 - q):
    out = []
    for s in sites:
        for q in seqs:
            for m in materials:
                out.append(StockReading(s, m, qty(s, m, q), "box", t0 + timedelta(seconds=10 * q), q, t0))
    return out


async def _write(dsn, batches, alerts=()):
    async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None, autocommit=True) as conn:
        for b in batches:
            await write_batch(conn, b, list(alerts))


def table_state(dsn, sites):
    with connect(dsn) as conn:
        latest = conn.execute(
            "SELECT site_id, material_id, qty, unit, ts, seq FROM stock_latest WHERE site_id = ANY(%s) ORDER BY 1, 2",
            (sites,)).fetchall()
        history = conn.execute(
            "SELECT site_id, material_id, ts, seq, qty, grid_cell FROM stock_readings WHERE site_id = ANY(%s) ORDER BY 1, 2, 3",
            (sites,)).fetchall()
    return latest, history


def test_sink_is_idempotent_under_replay_and_reordering(settings, unique):
    sites = [f"{unique}-S{i}" for i in range(4)] + [f"{unique}-tab\there\\"]  # COPY escaping too
    add_registry(settings.pg_dsn, [(s, f"{unique}-G", "ngo") for s in sites], {"mask": "box", "water": "l"}, {})
    t0 = utc_now() - timedelta(minutes=5)
    readings = readings_for(sites, ["mask", "water"], range(1, 11), t0)
    asyncio.run(_write(settings.pg_dsn, [readings[i:i + 13] for i in range(0, len(readings), 13)]))
    first = table_state(settings.pg_dsn, sites)
    assert len(first[0]) == 10 and len(first[1]) == 100
    assert all(row[5] == 10 and row[2] == Decimal(90) for row in first[0])
    assert all(row[5] == f"{unique}-G" for row in first[1])  # grid cell copied from the registry
    # Replay everything shuffled, in other batch sizes, twice, with in-batch duplicates.
    shuffled = readings * 2
    random.Random(7).shuffle(shuffled)
    asyncio.run(_write(settings.pg_dsn, [shuffled[i:i + 37] for i in range(0, len(shuffled), 37)]))
    assert table_state(settings.pg_dsn, sites) == first


def test_latest_only_moves_forward(settings, unique):
    site = f"{unique}-S"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {"mask": "box"}, {})
    t0 = utc_now()
    newer = StockReading(site, "mask", 5.0, "box", t0, 8, t0)
    older = StockReading(site, "mask", 50.0, "box", t0 + timedelta(seconds=60), 7, t0)  # later ts, lower seq
    asyncio.run(_write(settings.pg_dsn, [[newer], [older]]))
    latest, history = table_state(settings.pg_dsn, [site])
    assert [(r[2], r[5]) for r in latest] == [(Decimal(5), 8)]
    assert len(history) == 2  # the history keeps both readings


def _checks(dsn, stale_after_s=30.0):
    async def go():
        async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
            return await rollups.run_checks(conn, stale_after_s, 3, 10, (utc_now() - timedelta(hours=3), utc_now()))
    return asyncio.run(go())


def test_aggregates_stale_and_low_stock(settings, unique):
    g1, g2 = f"{unique}-G1", f"{unique}-G2"
    sites = [(f"{unique}-A", g1, "government"), (f"{unique}-B", g1, "household"), (f"{unique}-C", g2, "household"),
             (f"{unique}-D", g2, "ngo")]  # D never reports
    mat = f"{unique}-mask"
    add_registry(settings.pg_dsn, sites, {mat: "box"},
                 {(s[0], mat): 100 for s in sites}, safety={(g1, mat): 150, (g2, mat): 10})
    now = utc_now()
    rs = [StockReading(f"{unique}-A", mat, 120, "box", now - timedelta(seconds=5), 1, now),
          StockReading(f"{unique}-B", mat, 20, "box", now - timedelta(seconds=300), 1, now),  # stale
          StockReading(f"{unique}-C", mat, 40, "box", now - timedelta(seconds=5), 1, now)]
    asyncio.run(_write(settings.pg_dsn, [rs]))
    result = _checks(settings.pg_dsn)
    assert result.ran
    with connect(settings.pg_dsn) as conn:
        agg = {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT dimension, dim_key, reported_qty, contracted_qty, sites_contracted, sites_reporting, sites_stale"
            " FROM stock_aggregates WHERE material_id = %s", (mat,))}
        assert agg[("grid_cell", g1)] == (Decimal(140), Decimal(200), 2, 2, 1)
        assert agg[("grid_cell", g2)] == (Decimal(40), Decimal(200), 2, 1, 0)
        assert agg[("owner_kind", "household")] == (Decimal(60), Decimal(200), 2, 2, 1)
        assert agg[("material", "*")] == (Decimal(180), Decimal(400), 4, 3, 1)
        alerts = conn.execute(
            "SELECT kind, site_id, grid_cell, resolved_at FROM alerts WHERE site_id LIKE %s OR grid_cell LIKE %s",
            (f"{unique}%", f"{unique}%")).fetchall()
    assert sorted((a[0], a[1], a[2]) for a in alerts) == [
        ("low_stock", None, g1), ("stale", f"{unique}-B", g1)]
    # Checks again: nothing new (one open alert per condition).
    _checks(settings.pg_dsn)
    # B reports again with plenty: the stale and the low-stock alerts are resolved.
    asyncio.run(_write(settings.pg_dsn, [[StockReading(f"{unique}-B", mat, 90, "box", utc_now(), 2, now)]]))
    _checks(settings.pg_dsn)
    with connect(settings.pg_dsn) as conn:
        rows = conn.execute(
            "SELECT kind, resolved_at IS NOT NULL, published_at IS NULL FROM alerts WHERE site_id LIKE %s OR grid_cell LIKE %s",
            (f"{unique}%", f"{unique}%")).fetchall()
        hourly = conn.execute("SELECT sum(qty) FROM stock_hourly_cell WHERE grid_cell = %s AND material_id = %s",
                              (g1, mat)).fetchone()[0]
    assert sorted(rows) == [("low_stock", True, True), ("stale", True, True)]
    assert hourly is not None and hourly >= Decimal(120)


def _orders(dsn, unique, site, mat, rows):
    with connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, 'R-test', now(), 'test', 'test', 1, 60, 'test')",
                     (f"{unique}-E",))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s, %s, 1, now(), 'optimal')",
                     (f"{unique}-P", f"{unique}-E"))
        for i, (leg, status, qty, origin) in enumerate(rows):
            conn.execute(
                "INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                " material_id, qty, unit, status, created_at, status_at) VALUES (%s, %s, %s, 1, %s, %s, 'DC1', %s, %s,"
                " 'box', %s, now(), now())",
                (f"{unique}-O{i}", f"{unique}-P", f"{unique}-E", leg, origin or site, mat, qty, status))


def test_virtual_warehouse_query_and_cli(settings, unique):
    g = f"{unique}-G"
    mat = f"{unique}-mask"
    a, b = f"{unique}-A", f"{unique}-B"
    add_registry(settings.pg_dsn, [(a, g, "government"), (b, g, "enterprise")], {mat: "box"},
                 {(a, mat): 500, (b, mat): 300}, safety={(g, mat): 100})
    t0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
    asyncio.run(_write(settings.pg_dsn, [[
        StockReading(a, mat, 400, "box", t0, 1, t0), StockReading(b, mat, 250, "box", t0, 1, t0),
        StockReading(a, mat, 380, "box", t0 + timedelta(hours=1), 2, t0)]]))
    _orders(settings.pg_dsn, unique, a, mat, [
        ("supply", "open", 30, None), ("supply", "in_transit", 20, None), ("supply", "delivered", 999, None),
        ("supply", "cancelled", 999, None), ("delivery", "open", 999, "DC1")])
    with connect(settings.pg_dsn) as conn:
        [row] = virtual_warehouse(conn, grid=g)
        assert (row.reported_qty, row.contracted_qty, row.reserved_qty, row.safety_qty) == (630, 800, 50, 100)
        assert row.available_qty == 480 and row.unit == "box" and row.sites_reporting == 2
        [gov] = virtual_warehouse(conn, grid=g, owner_kind="government")
        assert (gov.reported_qty, gov.reserved_qty, gov.sites_contracted) == (380, 50, 1)
        [past] = virtual_warehouse(conn, grid=g, at=t0 + timedelta(minutes=30))
        assert past.reported_qty == 650
        assert virtual_warehouse(conn, grid=g, material="nothing") == []
    env = {"VR_PG_DSN": settings.pg_dsn, "VR_TOPIC_PREFIX": settings.topic_prefix}
    res = CliRunner().invoke(cli, ["stock", "--grid", g, "--json"], env=env)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rows"][0]["available_qty"] == 480.0 and data["totals"][0]["reserved_qty"] == 50.0
    res = CliRunner().invoke(cli, ["stock", "--grid", g, "--at", "2026-11-01T08:30:00Z"], env=env)
    assert res.exit_code == 0, res.output
    assert "650" in res.output and "box" in res.output and "available above safety 500 box" in res.output


def refresh_hourly(conn, variant: str, lo: datetime, hi: datetime) -> None:
    """What keeps readings_hourly current for hours that were already rolled up: the worker's
    stream_refresh_hourly call on plain PostgreSQL; on TimescaleDB the refresh policy (every 5
    minutes; the last hour is always read live), run here at once."""
    if variant != "timescale":
        conn.execute("SELECT stream_refresh_hourly(%s, %s)", (lo, hi))
        return
    deadline = time.monotonic() + 60
    while True:  # the server's own scheduler may be refreshing right now
        try:
            conn.execute("CALL refresh_continuous_aggregate('readings_hourly', %s, %s)", (lo, hi))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_stock_at_and_site_history_come_from_the_hourly_rollup(settings, unique, db_variant):
    """Same answers on both variants: at's own hour from the history, earlier hours from
    readings_hourly (TimescaleDB: the continuous aggregate; plain: the table the worker refreshes),
    readings older than the lookback not counted, readings in another unit not summed."""
    g, mat = f"{unique}-G", f"{unique}-mask"
    a, b, c = f"{unique}-A", f"{unique}-B", f"{unique}-C"
    add_registry(settings.pg_dsn, [(a, g, "government"), (b, g, "ngo"), (c, g, "ngo")], {mat: "box"}, {})
    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    rs = [StockReading(a, mat, 10, "box", t0 + timedelta(minutes=5), 1, t0),
          StockReading(a, mat, 12, "box", t0 + timedelta(minutes=50), 2, t0),
          StockReading(a, mat, 15, "box", t0 + timedelta(hours=3, minutes=10), 3, t0),
          StockReading(b, mat, 7, "box", t0 + timedelta(minutes=20), 1, t0),
          StockReading(b, mat, 9, "crate", t0 + timedelta(hours=2), 2, t0),
          StockReading(c, mat, 100, "box", t0 - timedelta(hours=9), 1, t0)]  # beyond the 6 h lookback of 11:xx
    asyncio.run(_write(settings.pg_dsn, [rs]))
    with connect(settings.pg_dsn, autocommit=True) as conn:
        refresh_hourly(conn, db_variant.name, t0 - timedelta(hours=10), t0 + timedelta(hours=4))
        at_0930 = virtual_warehouse(conn, grid=g, at=t0 + timedelta(hours=1, minutes=30))[0]
        assert (at_0930.reported_qty, at_0930.sites_reporting) == (19, 2)  # A's 12 and B's 7 from 08:xx
        at_1130 = virtual_warehouse(conn, grid=g, at=t0 + timedelta(hours=3, minutes=30))[0]
        # A's 15 (11:10, raw), B's 9 crates (10:00, rollup; not summed), C's 100 too old
        assert (at_1130.reported_qty, at_1130.sites_reporting, at_1130.unit_mismatches) == (15, 2, 1)
        at_1105 = virtual_warehouse(conn, grid=g, at=t0 + timedelta(hours=3, minutes=5))[0]
        assert at_1105.reported_qty == 12  # A's 11:10 reading is after at
        history = site_history(conn, a, until=t0 + timedelta(days=1))
    assert [(h.bucket, h.qty_last, h.qty_min, h.qty_max, h.readings) for h in history] == [
        (t0, 12, 10, 12, 2), (t0 + timedelta(hours=3), 15, 15, 15, 1)]
    res = CliRunner().invoke(cli, ["stock", "--grid", g, "--at", "2026-11-02T09:30:00Z"],
                             env={"VR_PG_DSN": settings.pg_dsn, "VR_TOPIC_PREFIX": settings.topic_prefix})
    assert res.exit_code == 0 and "19" in res.output, res.output


def test_a_failing_reconciliation_leaves_the_other_checks(settings, unique):
    """The stock-change reconciliation runs in a savepoint of the checks: if it fails (here: an open
    finding whose details hold no time), stale and low-stock checks still run and the error is
    reported in the result (the health page's last_checks)."""
    from vreserve.reconcile import Policy

    site, mat = f"{unique}-A", f"{unique}-mask"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {mat: "box"}, {(site, mat): 100})
    now = utc_now()
    asyncio.run(_write(settings.pg_dsn, [[StockReading(site, mat, 20, "box", now - timedelta(seconds=300), 1, now)]]))
    bad = f"unexplained_change:{site}:{mat}:1"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO alerts (alert_id, kind, severity, site_id, material_id, message, at, details)"
                     " VALUES (%s, 'unexplained_change', 'warning', %s, %s, 'x', now(), '{\"prev_ts\": \"not a time\"}')",
                     (bad, site, mat))
    try:
        async def go():
            async with await psycopg.AsyncConnection.connect(settings.pg_dsn, prepare_threshold=None) as conn:
                return await rollups.run_checks(conn, 30.0, 3, 10, None, Policy(settle_s=1))
        result = asyncio.run(go())
        assert result.ran and result.reconcile_error and "reconciliation failed" in result.reconcile_error
        with connect(settings.pg_dsn) as conn:
            stale = conn.execute("SELECT count(*) FROM alerts WHERE kind = 'stale' AND site_id = %s", (site,)).fetchone()[0]
        assert stale == 1  # the stale check ran and committed
    finally:
        with connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE alerts SET resolved_at = now() WHERE alert_id = %s", (bad,))


def test_two_readings_on_one_millisecond_and_a_pick_between_them_are_explained(settings, unique):
    """A site reports twice within a millisecond: its regular reading, then the one right after a
    pick it answered on that very millisecond. The reconciliation orders readings by (ts, seq), as
    they are keyed, keeps both changes, and explains the pick (before, a tie in ts was ordered at
    random: a phantom rise and an unexplained drop on an honest site, 1 run in 3)."""
    from vreserve.reconcile import FINDING_KINDS, Policy

    site, mat, eid = f"{unique}-T", f"{unique}-mask", f"E-{unique}"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {mat: "box"}, {(site, mat): 100})
    now = utc_now()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # sites stamp readings and answers to the ms
    t1, t2, t3 = (now - timedelta(seconds=s) for s in (40, 30, 20))
    # inserted newest-first, so that no insertion order can stand in for the (ts, seq) order
    readings = [StockReading(site, mat, q, "box", ts, seq, now)
                for q, ts, seq in ((40, t3, 4), (40, t2, 3), (100, t2, 2), (100, t1, 1))]
    asyncio.run(_write(settings.pg_dsn, [readings]))
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, %s, %s, 'test', 'test', 1, 60, 'test')",
                     (eid, f"r{unique}", now - timedelta(minutes=5)))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status)"
                     " VALUES (%s, %s, 1, %s, 'optimal')", (f"P-{eid}", eid, now - timedelta(minutes=5)))
        conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                     " material_id, qty, unit, status, created_at, status_at) VALUES"
                     " (%s,%s,%s,1,'supply',%s,'DC-1',%s,60,'box','in_transit',%s,%s)",
                     (f"O-{eid}", f"P-{eid}", eid, site, mat, t1, t2))
        conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty)"
                     " VALUES (%s, %s, 'in_transit', %s, 60)", (f"S-{eid}", f"O-{eid}", t2))

    async def go():
        async with await psycopg.AsyncConnection.connect(settings.pg_dsn, prepare_threshold=None) as conn:
            return await rollups.run_checks(conn, 30.0, 3, 10, None, Policy(settle_s=1))
    assert asyncio.run(go()).ran
    with connect(settings.pg_dsn) as conn:
        changes = conn.execute("SELECT prev_seq, seq, picked_qty, verdict FROM stock_changes WHERE site_id = %s"
                               " ORDER BY ts, seq", (site,)).fetchall()
        findings = conn.execute("SELECT kind FROM alerts WHERE site_id = %s AND kind = ANY(%s)",
                                (site, list(FINDING_KINDS))).fetchall()
        cursor = conn.execute("SELECT ts, seq FROM reconcile_cursor WHERE site_id = %s", (site,)).fetchone()
    assert changes == [(1, 2, 60, "explained"), (2, 3, 0, "explained"), (3, 4, 0, "explained")], changes
    assert findings == []
    assert cursor == (t3, 4)


def test_checks_run_once_an_interval_whichever_worker_holds_the_timer(settings, unique):
    """Every worker of a group has the checks' timer: a worker finding them run (by any worker)
    within the interval's share skips its own pass, so N workers do not run them N times."""
    site = f"{unique}-S"
    add_registry(settings.pg_dsn, [(site, f"{unique}-G", "ngo")], {"mask": "box"}, {(site, "mask"): 10})
    now = utc_now()
    asyncio.run(_write(settings.pg_dsn, [[StockReading(site, "mask", 5.0, "box", now, 1, now)]]))

    async def checks(within_s):
        async with await psycopg.AsyncConnection.connect(settings.pg_dsn, prepare_threshold=None) as conn:
            return await rollups.run_checks(conn, 30.0, 3, 10, None, unless_checked_within_s=within_s)
    assert asyncio.run(checks(None)).ran
    skipped = asyncio.run(checks(60.0))
    assert not skipped.ran and skipped.aggregate_rows == 0
    time.sleep(0.3)
    again = asyncio.run(checks(0.2))
    assert again.ran and again.aggregate_rows > 0


def test_the_reconciliation_cursor_moves_to_the_newest_settled_reading(settings, unique):
    """Each key's cursor moves to its newest settled reading by (ts, seq): for a key first seen with
    readings older than the lookback (the history is probed), and for a key with a cursor (taken
    from the pairs just judged); a reading not yet settled is not passed."""
    from vreserve import reconcile
    from vreserve.reconcile import Policy

    old_site, live_site, mat = f"{unique}-O", f"{unique}-L", f"{unique}-mask"
    add_registry(settings.pg_dsn, [(old_site, f"{unique}-G", "ngo"), (live_site, f"{unique}-G", "ngo")],
                 {mat: "box"}, {(old_site, mat): 100, (live_site, mat): 100})
    now = utc_now()
    aged = [StockReading(old_site, mat, 50, "box", now - timedelta(seconds=3600 - i), i, now) for i in (1, 2)]
    asyncio.run(_write(settings.pg_dsn, [aged, [StockReading(live_site, mat, 50, "box", now - timedelta(seconds=60), 1, now)]]))
    policy = Policy(settle_s=10, first_lookback_s=300)

    async def reconcile_pass():
        async with await psycopg.AsyncConnection.connect(settings.pg_dsn, prepare_threshold=None) as conn:
            async with conn.transaction(), conn.cursor() as cur:
                await reconcile.reconcile(cur, policy)

    def cursors():
        with connect(settings.pg_dsn) as conn:
            return dict(((r[0], r[1]) for r in conn.execute(
                "SELECT site_id, seq FROM reconcile_cursor WHERE site_id = ANY(%s)", ([old_site, live_site],))))
    asyncio.run(reconcile_pass())
    assert cursors() == {old_site: 2, live_site: 1}
    # the live key gets a settled reading (judged against its cursor) and one not yet settled
    asyncio.run(_write(settings.pg_dsn, [[StockReading(live_site, mat, 50, "box", now - timedelta(seconds=30), 2, now),
                                          StockReading(live_site, mat, 50, "box", now, 3, now)]]))
    asyncio.run(reconcile_pass())
    assert cursors() == {old_site: 2, live_site: 2}
