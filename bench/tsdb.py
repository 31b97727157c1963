"""``vreserve bench tsdb``: the readings history on TimescaleDB vs plain PostgreSQL, in one run.

Two private databases on the same server, one per migration variant, each with the same generated
registry (``--scale`` x 10,000 sites x 10 materials) and the same 30 days of history at one reading
per 10 minutes (at scale 1: 43.2 M rows), generated with SQL one day at a time. Stock moves in
steps: each (site, material) gets a new quantity every hour (within 50 units of its own base).
Then, per variant:

* rollup: TimescaleDB refreshes the continuous aggregate (what its policy does); plain PostgreSQL
  runs ``stream_refresh_hourly`` over the history (what the worker does as it goes);
* compression (TimescaleDB): the compression policy's job (chunks older than 7 days), and the size
  of those chunks before and after; the whole history's size on both;
* ``stock --at`` 20 days back (the whole warehouse: every grid cell and material), and one site's
  30-day hourly history (``stream.query.site_history``), each repeated: first and median times;
* ingest: the stream worker (``vreserve stream run``, a subprocess) drains the same backlog of
  ReadingBatch records from Kafka into each database, alternating T, P, P, T (or P, T, T, P);
  readings/s from its first row to its last.

The server must be able to load TimescaleDB (the local runner builds and preloads it). The machine
is shared: compare the two variants within one run, not with other runs.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from bench.procs import Proc, child_env, echo, free_port
from vreserve.settings import Settings

VRESERVE = str(Path(sys.executable).with_name("vreserve"))
FULL_SITES = 10_000
MATERIALS = 10
READINGS_PER_DAY = 144  # one per 10 minutes
VARIANTS = ("timescale", "plain")

GENERATE_DAY = """
INSERT INTO stock_readings (site_id, material_id, ts, seq, qty, unit, grid_cell, received_at, stored_at)
SELECT k.site_id, k.material_id, r.ts, r.n + 1,
       (k.base + abs(hashtext(k.site_id || k.material_id || (r.n / 6)::text)) %% 50)::numeric,
       k.unit, k.grid_cell, r.ts + INTERVAL '1 second', r.ts + INTERVAL '2 seconds'
FROM generate_series(%(n0)s::int, %(n1)s::int - 1) AS g(n)
CROSS JOIN LATERAL (SELECT g.n AS n) AS gn
CROSS JOIN (
    SELECT sm.site_id, sm.material_id, m.unit, s.grid_cell,
           100 + abs(hashtext(sm.site_id || sm.material_id)) %% 900 AS base,
           (abs(hashtext(sm.site_id)) %% 600) * INTERVAL '1 second' AS jitter
    FROM site_materials sm JOIN sites s USING (site_id) JOIN materials m USING (material_id)
) AS k
CROSS JOIN LATERAL (SELECT gn.n AS n, %(start)s::timestamptz + gn.n * INTERVAL '10 minutes' + k.jitter AS ts) AS r
"""


@dataclass
class Figures:
    variant: str
    rows: int = 0
    generate_s: float = 0.0
    rollup_s: float = 0.0
    compress_s: float | None = None
    compressed_before: int | None = None
    compressed_after: int | None = None
    total_bytes: int = 0
    stock_at_s: list[float] = field(default_factory=list)
    history_s: list[float] = field(default_factory=list)
    stock_at_server_ms: list[float] = field(default_factory=list)
    history_server_ms: list[float] = field(default_factory=list)
    history_rows: int = 0
    ingest_rates: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if not self.compressed_before or not self.compressed_after:
            return None
        return self.compressed_before / self.compressed_after


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def _create(admin_dsn: str, info: dict, name: str, variant: str) -> str:
    from psycopg.conninfo import make_conninfo

    from vreserve.db import connect, migrate

    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(**{**info, "dbname": name})
    applied = migrate(dsn, variant=variant)
    echo(f"setup: database {name}: {applied.variant.name} variant ({applied.variant.reason})")
    return dsn


def _generate(dsn: str, start: datetime, days: int, fig: Figures) -> None:
    """The history, one day per transaction (in time order, as a fleet writes it)."""
    from vreserve.db import connect

    t0 = time.monotonic()
    with connect(dsn, autocommit=True) as conn:
        for day in range(days):
            cur = conn.execute(GENERATE_DAY, {"n0": day * READINGS_PER_DAY, "n1": (day + 1) * READINGS_PER_DAY,
                                              "start": start})
            fig.rows += cur.rowcount
            if day % 5 == 4 or day == days - 1:
                elapsed = time.monotonic() - t0
                echo(f"  {fig.variant}: day {day + 1}/{days}: {fig.rows:,} rows in {elapsed:.0f} s "
                     f"({fig.rows / elapsed:,.0f} rows/s)")
    fig.generate_s = time.monotonic() - t0


def _rollup_and_compress(dsn: str, start: datetime, days: int, fig: Figures) -> None:
    from vreserve.db import connect

    with connect(dsn, autocommit=True) as conn:
        t0 = time.monotonic()
        if fig.variant == "timescale":
            conn.execute("CALL refresh_continuous_aggregate('readings_hourly', NULL, now() - INTERVAL '1 hour')")
        else:
            for day in range(days):
                lo = start + timedelta(days=day)
                conn.execute("SELECT stream_refresh_hourly(%s, %s)", (lo, lo + timedelta(days=1) - timedelta(seconds=1)))
        fig.rollup_s = time.monotonic() - t0
        echo(f"  {fig.variant}: hourly rollup in {fig.rollup_s:.1f} s")
        if fig.variant == "timescale":
            t0 = time.monotonic()
            [(job,)] = conn.execute("SELECT job_id FROM timescaledb_information.jobs"
                                    " WHERE proc_name = 'policy_compression' AND hypertable_name = 'stock_readings'").fetchall()
            conn.execute("CALL run_job(%s)", (job,))
            fig.compress_s = time.monotonic() - t0
            fig.compressed_before, fig.compressed_after = conn.execute(
                "SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)"
                " FROM chunk_compression_stats('stock_readings') WHERE compression_status = 'Compressed'").fetchone()
            fig.total_bytes = conn.execute("SELECT hypertable_size('stock_readings')").fetchone()[0]
        else:
            fig.total_bytes = conn.execute("SELECT pg_total_relation_size('stock_readings')").fetchone()[0]
        conn.execute("VACUUM ANALYZE stock_readings")
        conn.execute("ANALYZE readings_hourly" if fig.variant == "plain" else "SELECT 1")


def _server_ms(conn, sql: str, params: dict) -> float:
    """Planning + execution time on the server (EXPLAIN ANALYZE): the query's own cost, apart from
    the client's CPU, which a loaded machine starves."""
    [(plan,)] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()
    return plan[0]["Planning Time"] + plan[0]["Execution Time"]


def _queries(dsn: str, at: datetime, sites: list[str], fig: Figures, repeats: int) -> None:
    from stream.query import LATEST_AT, SITE_HISTORY, STOCK_AT_LOOKBACK, WAREHOUSE, site_history, virtual_warehouse
    from vreserve.db import connect

    at_sql = WAREHOUSE.format(latest=LATEST_AT)
    at_params = {"grid": None, "material": None, "owner_kind": None, "at": at, "lookback": STOCK_AT_LOOKBACK}
    with connect(dsn) as conn:
        for _ in range(repeats):
            t0 = time.perf_counter()
            rows = virtual_warehouse(conn, at=at)
            fig.stock_at_s.append(time.perf_counter() - t0)
            fig.stock_at_server_ms.append(_server_ms(conn, at_sql, at_params))
        reported = sum(r.sites_reporting for r in rows)
        echo(f"  {fig.variant}: stock --at {at:%Y-%m-%d %H:%M} UTC: {len(rows)} cell/material rows, {reported:,} "
             f"site readings; first {fig.stock_at_s[0] * 1000:,.0f} ms, median "
             f"{statistics.median(fig.stock_at_s) * 1000:,.0f} ms (server {statistics.median(fig.stock_at_server_ms):,.0f} ms)")
        now = conn.execute("SELECT now()").fetchone()[0]
        for site in sites:
            t0 = time.perf_counter()
            hist = site_history(conn, site, days=30)
            fig.history_s.append(time.perf_counter() - t0)
            fig.history_rows = len(hist)
            fig.history_server_ms.append(_server_ms(conn, SITE_HISTORY, {
                "site": site, "since": now - timedelta(days=30), "until": now}))
        echo(f"  {fig.variant}: one site's 30-day hourly history: {fig.history_rows} rows; first "
             f"{fig.history_s[0] * 1000:.1f} ms, median {statistics.median(fig.history_s) * 1000:.1f} ms "
             f"(server {statistics.median(fig.history_server_ms):.1f} ms)")


def _backlog(settings: Settings, site_units: list, n_readings: int, base_seq: int) -> int:
    """ReadingBatch records (one per site, all its materials) for about ``n_readings`` readings on
    the settings' readings topic, sequence numbers from ``base_seq``; returns the readings sent."""
    from stream.loadgen import reading_batch, send_batches

    now = datetime.now(timezone.utc)
    per_record = len(site_units[0][1])
    batches = []
    for n in range(-(-n_readings // per_record)):
        site, units = site_units[n % len(site_units)]
        ts = now - timedelta(seconds=60) + timedelta(milliseconds=n)
        batches.append(reading_batch(site, base_seq + n // len(site_units), ts,
                                     {m: (float(100 + n % 50), u) for m, u in units}))
    send_batches(settings, batches)
    return sum(len(b.report.readings) for b in batches)


def _ingest(settings: Settings, dsn: str, site_units: list, n_readings: int, base_seq: int, label: str) -> float:
    """Readings/s of one stream worker draining a backlog into ``dsn`` (first row to last)."""
    from vreserve.db import connect
    from vreserve.kafka_admin import ensure_topics

    run = settings.with_(topic_prefix=f"{settings.topic_prefix}{label}.", pg_dsn=dsn)
    ensure_topics(run)
    since = datetime.now(timezone.utc) - timedelta(seconds=61)
    expected = _backlog(run, site_units, n_readings, base_seq)
    count_sql = "SELECT count(*) FROM stock_readings WHERE ts >= %s AND seq >= %s"
    worker = Proc([VRESERVE, "stream", "run", "--web-port", str(free_port())],
                  child_env(run, VR_STATE_DIR=str(settings.state_dir)), f"worker-{label}")
    t_first = t_last = None
    count = 0
    try:
        with connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 300
            while count < expected and time.monotonic() < deadline and worker.proc.poll() is None:
                count = conn.execute(count_sql, (since, base_seq)).fetchone()[0]
                now = time.monotonic()
                if count and t_first is None:
                    t_first, first_count = now, count
                t_last = now
                time.sleep(0.1)
    finally:
        worker.stop()
    if count < expected or t_first is None or t_last <= t_first:
        raise RuntimeError(f"worker {label} wrote {count:,} of {expected:,} readings:\n" + "\n".join(worker.lines[-15:]))
    rate = (count - first_count) / (t_last - t_first)
    echo(f"  ingest {label}: {expected:,} readings, {rate:,.0f} readings/s")
    return rate


def _summary(figs: dict[str, Figures], sites: int, days: int, scale: float, elapsed: float) -> None:
    ts, pl = figs["timescale"], figs["plain"]
    med = statistics.median
    echo("")
    echo(f"== bench tsdb: {sites:,} sites x {MATERIALS} materials x {days} days at one reading per 10 min "
         f"(scale {scale:g}: {ts.rows:,} rows per variant), {elapsed / 60:.1f} min in all ==")
    echo(f"{'':34}{'TimescaleDB':>18}{'plain PostgreSQL':>20}   target")
    echo(f"{'history generated (SQL)':34}{ts.generate_s:>16.0f} s{pl.generate_s:>18.0f} s")
    echo(f"{'hourly rollup of the history':34}{ts.rollup_s:>16.1f} s{pl.rollup_s:>18.1f} s")
    echo(f"{'history size on disk':34}{_mib(ts.total_bytes):>18}{_mib(pl.total_bytes):>20}")
    ratio = ts.ratio
    echo(f"{'compressed chunks before/after':34}{_mib(ts.compressed_before) + ' / ' + _mib(ts.compressed_after):>18}"
         f"{'-':>20}")
    echo(f"{'compression ratio':34}{(f'{ratio:.1f}x' if ratio else '-'):>18}{'-':>20}   >= 10x: "
         f"{'met' if ratio and ratio >= 10 else 'NOT met'} (compressing took {ts.compress_s or 0:.0f} s)")
    echo(f"{'stock --at 20 days back (median)':34}{med(ts.stock_at_s) * 1000:>15,.0f} ms{med(pl.stock_at_s) * 1000:>17,.0f} ms"
         f"   < 1 s: {'met' if med(ts.stock_at_s) < 1 else 'NOT met'}")
    echo(f"{'  of which on the server':34}{med(ts.stock_at_server_ms):>15,.0f} ms{med(pl.stock_at_server_ms):>17,.0f} ms")
    echo(f"{'one site 30-day hourly (median)':34}{med(ts.history_s) * 1000:>15.1f} ms{med(pl.history_s) * 1000:>17.1f} ms"
         f"   < 100 ms: {'met' if med(ts.history_s) < 0.1 else 'NOT met'}")
    echo(f"{'  of which on the server':34}{med(ts.history_server_ms):>15.1f} ms{med(pl.history_server_ms):>17.1f} ms")
    t_rate, p_rate = statistics.mean(ts.ingest_rates), statistics.mean(pl.ingest_rates)
    echo(f"{'stream worker ingest (mean)':34}{t_rate:>10,.0f} readings/s{p_rate:>12,.0f} readings/s"
         f"   >= 0.9x plain: {t_rate / p_rate:.2f}x {'met' if t_rate >= 0.9 * p_rate else 'NOT met'}")
    echo(f"  ingest runs: TimescaleDB {', '.join(f'{r:,.0f}' for r in ts.ingest_rates)}; "
         f"plain {', '.join(f'{r:,.0f}' for r in pl.ingest_rates)} readings/s")


@click.command("tsdb")
@click.option("--scale", type=click.FloatRange(0.001, 1.0), default=1.0, show_default=True,
              help="Share of the issue's fleet of 10,000 sites (1 = 43.2 M rows per variant over 30 days).")
@click.option("--days", type=click.IntRange(21, 400), default=30, show_default=True, help="Days of history.")
@click.option("--ingest-readings", type=click.IntRange(1000), default=100_000, show_default=True,
              help="Readings per stream-worker ingest run (4 runs: T, P, P, T).")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Runs of each query.")
@click.option("--ingest-order", type=click.Choice(["TPPT", "PTTP"]), default="TPPT", show_default=True,
              help="Order of the four ingest runs (T: TimescaleDB, P: plain).")
@click.option("--keep", is_flag=True, help="Keep the two databases (dropped by default).")
@click.pass_obj
def command(settings: Settings, scale: float, days: int, ingest_readings: int, repeats: int,
            ingest_order: str, keep: bool) -> None:
    """TimescaleDB vs plain PostgreSQL on 30 days of readings history: compression, stock --at,
    one site's history, and the stream worker's ingest rate."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from bench.procs import services_up
    from vreserve.registry_generate import generate_registry
    from vreserve.registry_store import store_registry
    from vreserve.db import connect, server_variant

    logging.getLogger("kafka").setLevel(logging.ERROR)  # topic-creation retries are not news here
    if not all(os.environ.get(v) for v in ("VR_KAFKA_BOOTSTRAP", "VR_MQTT_URL", "VR_PG_DSN")):
        services_up(settings)  # with all three addresses given, use them as they are (as the tests do)
    t_start = time.monotonic()
    info = conninfo_to_dict(settings.pg_dsn)
    admin_dsn = make_conninfo(**{**info, "dbname": info.get("dbname") or "postgres"})
    with connect(admin_dsn) as conn:
        server = server_variant(conn)
    if not server.timescale:
        raise click.ClickException(f"this benchmark needs a server that loads TimescaleDB: {server.reason}")
    token = uuid.uuid4().hex[:6]
    sites = max(1, round(FULL_SITES * scale))
    reg = generate_registry(sites, seed=13, id_prefix=f"bt{token}-", materials_per_site=MATERIALS)
    site_units = [(s.site_id, [(m, reg.materials[m].unit) for m in s.materials]) for s in reg.sites.values()]
    now = datetime.now(timezone.utc)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days, hours=1)
    names = {v: f"vr_bench_tsdb_{token}_{v}" for v in VARIANTS}
    figs = {v: Figures(v) for v in VARIANTS}
    dsns: dict[str, str] = {}
    try:
        for v in VARIANTS:
            dsns[v] = _create(admin_dsn, info, names[v], v)
            with connect(dsns[v]) as conn:
                store_registry(conn, reg)
        echo(f"setup: registry of {sites:,} sites x {MATERIALS} materials in both; history from {start:%Y-%m-%d %H:%M} UTC")
        for v in VARIANTS:
            _generate(dsns[v], start, days, figs[v])
            _rollup_and_compress(dsns[v], start, days, figs[v])
        at = (now - timedelta(days=20)).replace(minute=37, second=0, microsecond=0)
        some_sites = [site_units[i * len(site_units) // 10][0] for i in range(10)]
        for v in VARIANTS:
            _queries(dsns[v], at, some_sites, figs[v], repeats)
        bench = settings.with_(topic_prefix=f"btsdb{token}.")
        for i, v in enumerate({"T": "timescale", "P": "plain"}[c] for c in ingest_order):
            seq = 1_000_000 * (i + 1)
            figs[v].ingest_rates.append(_ingest(bench, dsns[v], site_units, ingest_readings, seq, f"{v}{i}"))
        _summary(figs, sites, days, scale, time.monotonic() - t_start)
    finally:
        _cleanup(settings, admin_dsn, names if not keep else {}, f"btsdb{token}.")


def _cleanup(settings: Settings, admin_dsn: str, names: dict[str, str], prefix: str) -> None:
    """Drop the bench's databases and topics (the databases are kept with --keep)."""
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from vreserve.db import connect

    with connect(admin_dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin = kafka_clients.admin(settings, ADMIN, request_timeout_ms=15000)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()
