"""``vreserve bench stream --backlog N``: the stream worker and a plain consumer draining the same
backlog of N readings records from Kafka into the database, in one invocation.

Setup (stopped and dropped at the end): a private database with a generated registry (sites x
materials), a private topic prefix, and the backlog produced up front (each site reports in turn,
every record one site's readings of all its materials). Then, per contender and in the order
given, from empty readings tables: start it, and time it from its first record to the last
reading committed. Printed per contender: readings/s, client CPU per 10,000 readings (the
contender's process only), PostgreSQL CPU per 10,000 readings, and the load average of the
machine around the run (2 shared cores: absolute figures move with other people's work; the
ratios of one invocation are the figures to read). Then the ratios worker / baseline.

The worker's readings count comes from its health page (polled every 0.2 s); the baseline
measures itself (see :mod:`bench.stream_baseline`).

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from vreserve import kafka_clients, topics
from vreserve.kafka_access import ADMIN
from vreserve.settings import Settings

from bench.procs import Proc, child_env, cpu_seconds, free_port

VRESERVE = str(Path(sys.executable).with_name("vreserve"))
TARGET_READINGS_S = 50_000
#: A drain shorter than this says nothing about a sustained rate.
MIN_JUDGED_S = 10.0
TARGET_CPU_RATIO = 3.0
#: The worker's VR_READING_INTERVAL_S during the drain. The backlog is an hour of history (each
#: site every 10 s); with the default 10 s interval every site of it is stale by the time it is
#: drained, and the worker spent about a quarter of its CPU raising and publishing stale alerts
#: (~10 per site, one per new last reading: py-spy, 2026-12-01): the alert outbox's cost, not the
#: per-reading cost the comparison is about. The stale rule itself is tested in tests/stream.
READING_INTERVAL_S = 3600


@dataclass
class Drain:
    """One contender's run over the backlog."""

    name: str
    readings: int
    seconds: float
    cpu_s: float          # the contender's own process
    pg_cpu_s: float       # PostgreSQL (postmaster and backends)
    load: tuple[float, float]  # 1-minute load average before / after
    note: str = ""  # where a worker's time went (its health page)

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    def per_10k(self, cpu: float) -> float:
        return 1000.0 * cpu / self.readings * 10_000 if self.readings else 0.0

    def line(self) -> str:
        return (f"{self.name:<22} {self.readings:>10,} readings in {self.seconds:6.1f} s = {self.rate:>8,.0f} readings/s"
                f" | client CPU {self.per_10k(self.cpu_s):6.1f} ms, PostgreSQL CPU {self.per_10k(self.pg_cpu_s):6.1f} ms"
                f" per 10,000 readings | load average {self.load[0]:.1f} -> {self.load[1]:.1f}"
                + (f"\n{'':<23}{self.note}" if self.note else ""))


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def produce_backlog(settings: Settings, site_units: list[tuple[str, list[tuple[str, str]]]], records: int,
                    echo) -> int:
    """``records`` ReadingBatch records, each site in turn with a rising seq; returns readings."""
    from stream.loadgen import producer, reading_batch
    from vreserve.schemas.common import utc_now

    prod = producer(settings, linger_ms=50, acks=1, max_in_flight_requests_per_connection=5)
    topic = settings.topic(topics.READINGS)
    t0, readings = utc_now() - timedelta(hours=1), 0
    try:
        for i in range(records):
            site_id, mats = site_units[i % len(site_units)]
            seq = i // len(site_units) + 1
            b = reading_batch(site_id, seq, t0 + timedelta(milliseconds=i),
                              {m: (100.0 + seq % 7, u) for m, u in mats}, t0)
            prod.send(topic, key=site_id.encode(), value=b.to_json())
            readings += len(mats)
            if (i + 1) % 20_000 == 0:
                echo(f"setup: backlog {i + 1:,} of {records:,} records produced")
        prod.flush(120)
    finally:
        prod.close(10)
    return readings


def reset(settings: Settings) -> None:
    """Empty readings tables, and no committed offsets for the worker's group: each contender
    starts from the beginning of the backlog."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    from vreserve.db import connect

    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE stock_readings, stock_latest, stream_offsets, stream_sites, alerts CASCADE")
    consumer = kafka_clients.consumer(settings, ADMIN, group_id=settings.group("stream"), enable_auto_commit=False)
    try:
        tps = [TopicPartition(settings.topic(topics.READINGS), p) for p in range(settings.partitions)]
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    finally:
        consumer.close()


def health_document(port: int) -> dict | None:
    """A worker's /health document, or None while it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return json.loads(r.read())
    except OSError:
        return None


def drain_worker(settings: Settings, expected: int, timeout_s: float, processes: int = 1,
                 writers: int | None = None) -> Drain:
    """``vreserve stream run`` (``processes`` of them, one consumer group) over the backlog; timed
    from the first record taken to the last reading committed."""
    ports = [free_port() for _ in range(processes)]
    load0 = load_average()
    env = child_env(settings, VR_STATE_DIR=str(settings.state_dir), VR_READING_INTERVAL_S=str(READING_INTERVAL_S))
    extra = ["--writers", str(writers)] if writers is not None else []
    procs = [Proc([VRESERVE, "stream", "run", "--web-port", str(port), *extra], env, f"worker:{port}") for port in ports]
    try:
        start = cpu0 = pg0 = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.proc.poll() is not None for p in procs):
                raise RuntimeError("stream worker exited:\n" + "\n".join(l for p in procs for l in p.lines[-20:]))
            docs = [health_document(port) or {} for port in ports]
            if start is None and any(h.get("records", 0) > 0 for h in docs):
                start, cpu0, pg0 = time.monotonic(), sum(cpu_seconds(p.pid) for p in procs), _pg_backends(settings.pg_dsn)
            written = sum(h.get("history_rows", 0) for h in docs)
            if start is not None and written >= expected:
                name = "stream worker (Faust)" if processes == 1 else f"{processes} stream workers"
                name += f", {writers} writer(s)" if writers is not None else ""
                seconds, cpu = time.monotonic() - start, sum(cpu_seconds(p.pid) for p in procs) - cpu0
                by_role = _pg_cpu_by_role(pg0, _pg_backends(settings.pg_dsn))
                note = _where_time_went(docs) + "\n" + " " * 23 + _pg_split_text(by_role, written)
                return Drain(name, written, seconds, cpu, sum(by_role.values()), (load0, load_average()), note)
            time.sleep(0.2)
        raise RuntimeError(f"stream worker(s) did not drain the backlog in {timeout_s:.0f} s")
    finally:
        for p in procs:
            p.stop()


def _where_time_went(docs: list[dict]) -> str:
    """The workers' own split of their time (since start, startup included), from their health pages."""
    total = {k: sum(float(h.get(k) or 0) for h in docs) for k in ("fold_s", "db_write_s", "gc_s", "gc_full", "batches")}
    return (f"(workers' own account: fold {total['fold_s']:.1f} s, write+commit task {total['db_write_s']:.1f} s"
            f" (wall), garbage collector {total['gc_s']:.2f} s in {total['gc_full']:.0f} full passes,"
            f" {total['batches']:.0f} batches; periodic checks (wall): {_checks_text(docs)})")


def _checks_text(docs: list[dict]) -> str:
    steps: dict[str, float] = {}
    for h in docs:
        for step, seconds in (h.get("checks_s") or {}).items():
            steps[step] = steps.get(step, 0.0) + float(seconds)
    return ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) or "none ran"


def drain_baseline(settings: Settings, expected: int, timeout_s: float) -> Drain:
    load0 = load_average()
    proc = Proc([sys.executable, "-m", "bench.stream_baseline", settings.group("baseline"), str(expected)],
                child_env(settings), "baseline")
    try:
        proc.proc.wait(timeout_s)
    finally:
        proc.stop()
    result = next((json.loads(line) for line in reversed(proc.lines) if line.startswith("{")), None)
    if result is None or result["readings"] < expected:
        raise RuntimeError("baseline consumer did not drain the backlog:\n" + "\n".join(proc.lines[-20:]))
    return Drain("plain consumer (bench)", result["readings"], result["seconds"], result["cpu_s"],
                 result["pg_cpu_s"], (load0, load_average()))


def _pg_backends(dsn: str) -> dict[int, tuple[str, float]]:
    """pid -> (application_name, CPU seconds) of the PostgreSQL backends serving the bench's own
    database (the server is shared: other databases' backends are not counted), read from /proc."""
    from vreserve.db import connect

    with connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchall()
    return {pid: (name or "?", cpu_seconds(pid)) for pid, name in rows}


def _pg_cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """PostgreSQL CPU seconds between two snapshots, per application_name (the worker names each
    of its connections: writer, checks, outbox, state, preload). A backend that ended between the
    snapshots is not counted (the worker's connections live as long as it does)."""
    out: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        out[name] = out.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return out


def _pg_split_text(by_role: dict[str, float], readings: int) -> str:
    per_10k = {k: 1000.0 * v / readings * 10_000 for k, v in by_role.items()} if readings else {}
    return "PostgreSQL CPU per 10,000 readings by connection: " + ", ".join(
        f"{k} {v:.1f} ms" for k, v in sorted(per_10k.items(), key=lambda kv: -kv[1]))


def _delete_topics(settings: Settings) -> None:
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def compare(drains: list[Drain], echo) -> None:
    echo("")
    for d in drains:
        echo(d.line())
    worker = next((d for d in drains if d.name.startswith("stream worker")), None)
    pair = next((d for d in drains if d.name.startswith("2 stream workers")), None)
    if worker and pair and worker.rate:
        echo(f"2 workers / 1 worker: throughput {pair.rate / worker.rate:.2f}x (2 cores shared with everyone: "
             f"a second worker gains only what the machine has spare)")
    base = next((d for d in drains if d.name.startswith("plain")), None)
    if worker and base and base.rate and worker.per_10k(1) and base.cpu_s:
        cpu_ratio = worker.per_10k(worker.cpu_s) / base.per_10k(base.cpu_s)
        echo(f"worker / baseline: throughput {worker.rate / base.rate:.2f}x, client CPU per reading "
             f"{cpu_ratio:.1f}x (target within {TARGET_CPU_RATIO:.0f}x: {'met' if cpu_ratio <= TARGET_CPU_RATIO else 'NOT met'}); "
             f"worker {worker.rate:,.0f} readings/s (target {TARGET_READINGS_S:,}: {_rate_verdict(worker)})")


def _rate_verdict(worker: Drain) -> str:
    """A drain of a few seconds is a burst, not a sustained rate: too short to judge the target."""
    if worker.seconds < MIN_JUDGED_S:
        return f"not judged: a {worker.seconds:.1f} s drain is a burst (give a backlog that takes >= {MIN_JUDGED_S:.0f} s)"
    return ("met" if worker.rate >= TARGET_READINGS_S else "NOT met") + " on this shared machine"


@contextmanager
def private_database(settings: Settings, token: str, sites: int, materials: int):
    """A private database (migrated, a generated registry stored), dropped at the end; yields its
    DSN and the registry's sites as (site id, [(material, unit), ...])."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate
    from vreserve.registry_generate import generate_registry
    from vreserve.registry_store import store_registry

    info = conninfo_to_dict(settings.pg_dsn)
    dbname = f"vr_bench_backlog_{token}"
    dsn = make_conninfo(**{**info, "dbname": dbname})
    admin_dsn = make_conninfo(**{**info, "dbname": info.get("dbname") or "postgres"})
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        migrate(dsn)
        reg = generate_registry(sites, seed=17, id_prefix=f"bb{token}-", materials_per_site=materials)
        with connect(dsn) as conn:
            store_registry(conn, reg)
        yield dsn, [(s.site_id, [(m, reg.materials[m].unit) for m in s.materials]) for s in reg.sites.values()]
    finally:
        with connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def bench_settings(settings: Settings, topic_prefix: str, dsn: str, state: Path) -> Settings:
    """``settings`` on a private topic prefix, database and state folder, but with the Kafka
    secrets and CA ``settings`` names (the brokers are secured)."""
    return settings.with_(topic_prefix=topic_prefix, pg_dsn=dsn, state_dir=state,
                          secrets_dir=str(settings.secrets_folder),
                          kafka_ca_file=str(kafka_clients.ca_file(settings).resolve()))


def fill_topic(bench: Settings, site_units: list, records: int, echo) -> int:
    """The bench's topics, and the backlog of ``records`` records on its readings topic; returns
    the readings in it."""
    from vreserve.kafka_admin import ensure_topics

    ensure_topics(bench)
    expected = produce_backlog(bench, site_units, records, echo)
    materials = max((len(m) for _s, m in site_units), default=0)
    echo(f"setup: backlog of {records:,} records = {expected:,} readings on {bench.partitions} partitions "
         f"({len(site_units):,} sites x {materials} materials); the worker runs with VR_READING_INTERVAL_S="
         f"{READING_INTERVAL_S} (the backlog is an hour old: no stale-alert flood)")
    return expected


def delete_topics_quietly(bench: Settings, echo) -> None:
    try:
        _delete_topics(bench)
    except Exception as exc:  # noqa: BLE001 - a leftover bench topic is harmless
        echo(f"could not delete bench topics: {exc}")


def run_backlog(settings: Settings, records: int = 100_000, sites: int = 10_000, materials: int = 10,
                order: tuple[str, ...] = ("worker", "baseline"), echo=print) -> list[Drain]:
    """Set up, drain the backlog with each contender in ``order``, compare, clean up."""
    import shutil
    import tempfile
    import uuid

    token = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="vr-bench-backlog-"))
    drains: list[Drain] = []
    try:
        with private_database(settings, token, sites, materials) as (dsn, site_units):
            # A state folder of its own, but the installation's secrets and CA (the services are secured).
            bench = bench_settings(settings, f"bbacklog{token}.", dsn, state)
            try:
                expected = fill_topic(bench, site_units, records, echo)
                for name in order:
                    reset(bench)
                    if name == "baseline":
                        drains.append(drain_baseline(bench, expected, timeout_s=900))
                    else:
                        workers, _, writers = name[6:].partition("-w")
                        drains.append(drain_worker(bench, expected, timeout_s=900, processes=int(workers or 1),
                                                   writers=int(writers) if writers else None))
                    echo(drains[-1].line())
            finally:
                delete_topics_quietly(bench, echo)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    compare(drains, echo)
    return drains
