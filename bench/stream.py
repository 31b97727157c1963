"""``vreserve bench stream``: end to end, simulated sites -> MQTT -> bridge -> Kafka -> Faust -> PostgreSQL.

What runs (everything started here is stopped here, and its topics and database are dropped):

* a private database with a generated registry (default 10,000 sites x 10 materials = 100,000
  (site, material) keys), a private topic prefix, and (``--source e2e``, the default) a PRIVATE
  Mosquitto on its own port, so the load never reaches anyone else's bridge;
* the fleet (``vreserve simulate sites --auth gateway``, sharded over processes), the bridge
  (``vreserve ingest run``) and the stream worker (``vreserve stream run``), each its own process;
* ``--source kafka`` replaces fleet + Mosquitto + bridge by ``--fleet-procs`` producer processes
  of ReadingBatch records (:mod:`bench.stream_producer`, the bridge's bytes pre-built per site):
  the worker's and the database's own ceiling.

Per rate step (offered messages/s = sites / interval; x materials = readings/s):
* sustained readings/s = readings the worker folded and committed during the measured window;
* database rows/s = rows added to the readings history in that window;
* latency = sensor timestamp -> the commit that made the row queryable, per reading, from the
  worker's histogram (5 % buckets; the worker takes the time right after COMMIT returns);
* CPU of every process over the window (% of one core) and the worker's RSS with its key count.
A step is sustained when the worker kept >= 95 % of the published readings/s with p99 < 2 s.
The machine's two cores are shared with the broker, the database and other people's work: noisy.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from vreserve.settings import Settings
from bench.stream_backlog import health_document as _health, run_backlog
from bench.procs import Proc, child_env, fleet_shards, echo, parse_rates, services_up, children as _children, cpu_seconds as _cpu_seconds, free_port as _free_port, rss_mib as _rss_mib

VRESERVE = str(Path(sys.executable).with_name("vreserve"))
TARGET_READINGS_S = 20_000
TARGET_P99_MS = 2000.0


@dataclass
class Step:
    rate: float                      # offered messages/s
    published_readings_s: float = 0.0
    readings_s: float = 0.0          # folded + committed by the worker in the window
    db_rows_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mib: float = 0.0
    keys: int = 0
    drained_s: float | None = None   # None: not drained
    sensor_to_kafka_ms: float | None = None  # moving averages in the worker (see stream.agents)
    kafka_to_fold_ms: float | None = None
    batch_records: float = 0.0       # mean records per database batch in the window
    writer_busy: float = 0.0         # share of the window the database writer was busy
    writer_steps: dict[str, float] = field(default_factory=dict)  # its steps' shares of the window
    note: str = ""

    @property
    def sustained(self) -> bool:
        return (self.published_readings_s > 0 and self.readings_s >= 0.95 * self.published_readings_s
                and self.p99_ms is not None and self.p99_ms < TARGET_P99_MS and self.drained_s is not None)


def _health_all(ports: list[int]) -> dict | None:
    """The workers' health documents added up (counters, latency histogram, keys)."""
    docs = [_health(p) for p in ports]
    if any(d is None for d in docs):
        return None
    out = dict(docs[0])
    for d in docs[1:]:
        for k in ("records", "readings", "history_rows", "batches", "db_write_s", "table_keys", "dead_letters"):
            out[k] = out.get(k, 0) + d.get(k, 0)
        out["write_steps_s"] = {k: out.get("write_steps_s", {}).get(k, 0.0) + d.get("write_steps_s", {}).get(k, 0.0)
                                for k in set(out.get("write_steps_s", {})) | set(d.get("write_steps_s", {}))}
        out["latency_counts"] = [a + b for a, b in zip(out["latency_counts"], d["latency_counts"])]
        for k in ("last_sensor_to_kafka_ms", "last_kafka_to_fold_ms"):
            vals = [x.get(k) for x in docs if x.get(k) is not None]
            out[k] = max(vals) if vals else None
    return out


def _env(settings: Settings) -> dict:
    return child_env(settings, VR_STATE_DIR=str(settings.state_dir))


class KafkaSource:
    """Offer ReadingBatch records at ``rate`` records/s for ``duration`` s from ``processes``
    producer processes (:mod:`bench.stream_producer`: pre-built bytes, each process a share of the
    sites), all starting at one wall time once connected."""

    #: seconds from spawning the producers to their common start (imports, SASL_SSL login, metadata)
    STARTUP_S = 8.0

    def __init__(self, settings: Settings, site_units: list[tuple[str, list[tuple[str, str]]]], processes: int,
                 folder: Path):
        import json

        self.settings = settings
        self.processes = max(1, processes)
        self.units_file = folder / "bench-site-units.json"
        self.units_file.write_text(json.dumps(site_units))
        self.sent = 0
        self.late_s = 0.0  # the latest any producer started after the common start, over all steps
        self.pids: list[int] = []
        self.current: list[Proc] = []  # this step's producers (stopped by the bench's teardown)

    def run(self, rate: float, duration: float) -> threading.Thread:
        """Start the producers and return at their common start, with a thread that collects their
        counts into ``sent`` when they are done."""
        import json

        start_at = time.time() + self.STARTUP_S
        procs = [Proc([sys.executable, "-m", "bench.stream_producer", str(self.units_file), str(k),
                       str(self.processes), repr(rate / self.processes), repr(duration), repr(start_at)],
                      child_env(self.settings), f"producer{k}") for k in range(self.processes)]
        self.pids, self.current = [p.pid for p in procs], procs
        for p in procs:
            if not p.wait_line("ready", 60):
                raise RuntimeError(f"bench producer did not connect: {p.lines[-10:]}")
        time.sleep(max(0.0, start_at - time.time()))

        def collect() -> None:
            for p in procs:
                p.proc.wait(duration + 120)
                result = next((json.loads(line) for line in reversed(p.lines) if line.startswith("{")), None)
                if result is None:
                    raise RuntimeError(f"bench producer failed: {p.lines[-10:]}")
                self.sent += result["sent"]
                self.late_s = max(self.late_s, result["late_s"])

        t = threading.Thread(target=collect, daemon=True)
        t.start()
        return t

    def close(self) -> None:
        """Nothing to close: each step's producers end with it."""


def main(settings: Settings, sites: int = 10_000, materials: int = 10, rates: tuple[float, ...] = (500, 1000, 2000),
         step_s: float = 20.0, warmup_s: float = 5.0, fleet_procs: int = 2, gateways: int = 4, source: str = "e2e",
         workers: int = 1, echo=print, writers: int | None = None) -> list[Step]:
    """Set up once, then one measured step per rate (rising) until one is not sustained; always clean up."""
    run = _StreamBench.create(settings, sites, materials, step_s, warmup_s, fleet_procs, gateways, source, workers,
                              echo)
    run.writers = writers
    results: list[Step] = []
    t_start = time.monotonic()
    try:
        run.setup()
        for rate in rates:
            step = run.step(rate)
            results.append(step)
            echo(_format(step, materials))
            if not step.sustained:
                echo("  -> not sustained; higher rates skipped")
                break
    finally:
        run.teardown()
    _summary(results, sites, materials, source, echo, time.monotonic() - t_start)
    return results


@dataclass
class _StreamBench:
    """One bench run's private database, topics, broker (e2e) and processes (all removed by teardown)."""

    settings: Settings
    bench: Settings
    token: str
    dbname: str
    admin_dsn: str
    state: Path
    mqtt_port: int
    web_ports: list[int]
    sites: int
    materials: int
    step_s: float
    warmup_s: float
    fleet_procs: int
    gateways: int
    source: str
    workers: int
    echo: Callable[[str], None]
    broker: Any = None               # the private Mosquitto (--source e2e only)
    kafka_pid: int | None = None
    pg_pid: int | None = None
    procs: list[Proc] = field(default_factory=list)
    worker_procs: list[Proc] = field(default_factory=list)
    kafka_source: KafkaSource | None = None
    named: dict[str, list[int]] = field(default_factory=dict)  # CPU accounting: label -> pids
    created_db: bool = False
    seed: int = 17
    writers: int | None = None       # the workers' --writers (None: their default)

    @classmethod
    def create(cls, settings: Settings, sites: int, materials: int, step_s: float, warmup_s: float, fleet_procs: int,
               gateways: int, source: str, workers: int, echo) -> "_StreamBench":
        # lazy: bench modules are mounted on `vreserve --help`; kafka and psycopg cost ~1 s to import
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from deploy.runner import Kafka, Mosquitto, Postgres
        from vreserve import kafka_clients

        token = uuid.uuid4().hex[:6]
        state = Path(tempfile.mkdtemp(prefix="vr-bench-stream-"))
        addr = settings.mqtt
        mqtt_port = _free_port()
        web_ports = [_free_port() for _ in range(workers)]
        info = conninfo_to_dict(settings.pg_dsn)
        dbname = f"vr_bench_stream_{token}"
        bench = settings.with_(
            topic_prefix=f"bstream{token}.", pg_dsn=make_conninfo(**{**info, "dbname": dbname}),
            mqtt_url=f"{'mqtts' if addr.tls else 'mqtt'}://{addr.username}:{addr.password}@127.0.0.1:{mqtt_port}", state_dir=state,
            mqtt_ca_file="",  # the private broker's CA is made in the private state dir, not the shared one
            # Kafka is the shared broker: log in with the installation's secrets, check it against its CA
            secrets_dir=str(settings.secrets_folder), kafka_ca_file=str(kafka_clients.ca_file(settings).resolve()))
        admin_dsn = make_conninfo(**{**info, "dbname": info.get("dbname") or "postgres"})
        run = cls(settings, bench, token, dbname, admin_dsn, state, mqtt_port, web_ports, sites, materials, step_s,
                  warmup_s, fleet_procs, gateways, source, workers, echo)
        run.broker = Mosquitto(bench) if source == "e2e" else None
        run.kafka_pid = Kafka(settings).pid()
        run.pg_pid = Postgres(settings).pid()
        return run

    @property
    def prefix(self) -> str:
        return self.bench.topic_prefix

    @property
    def id_prefix(self) -> str:
        return f"bs{self.token}-"

    def setup(self) -> None:
        """The database with the registry, the topics, the worker(s), then the source of load."""
        from vreserve.registry_generate import generate_registry  # lazy: see create
        from vreserve.registry_store import store_registry
        from vreserve.db import connect, migrate
        from vreserve.kafka_admin import ensure_topics

        self.echo(f"setup: source {self.source}; database {self.dbname}, topic prefix {self.prefix}"
                  + (f", private Mosquitto on 127.0.0.1:{self.mqtt_port}" if self.broker else ""))
        with connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.created_db = True
        migrate(self.bench.pg_dsn)
        t0 = time.monotonic()
        reg = generate_registry(self.sites, seed=self.seed, id_prefix=self.id_prefix, materials_per_site=self.materials)
        with connect(self.bench.pg_dsn) as conn:
            store_registry(conn, reg)
        self.echo(f"setup: registry of {self.sites} sites x {self.materials} materials stored in "
                  f"{time.monotonic() - t0:.1f} s")
        ensure_topics(self.bench)
        self.start_workers()
        self.start_source(reg)

    def start_workers(self) -> None:
        """The stream worker(s), waited for until healthy and holding every partition between them."""
        for port in self.web_ports:
            argv = [VRESERVE, "stream", "run", "--web-port", str(port)]
            if self.writers is not None:
                argv += ["--writers", str(self.writers)]
            self.worker_procs.append(Proc(argv, _env(self.bench), f"worker:{port}"))
        self.procs.extend(self.worker_procs)
        deadline = time.monotonic() + 90
        while True:
            hs = [_health(p) for p in self.web_ports]
            if all(h and h.get("status") == "ok" for h in hs) and \
                    len({x for h in hs for x in h.get("assigned_partitions", [])}) >= self.settings.partitions:
                break
            if any(w.proc.poll() is not None for w in self.worker_procs) or time.monotonic() > deadline:
                raise RuntimeError("stream worker(s) did not start:\n" + "\n".join(self.worker_procs[0].lines[-20:]))
            time.sleep(0.3)
        self.echo(f"setup: {self.workers} stream worker(s) up"
                  + (f" with --writers {self.writers}" if self.writers is not None else "") + " "
                  f"(pids {', '.join(str(w.pid) for w in self.worker_procs)}), "
                  f"health on 127.0.0.1:{', '.join(map(str, self.web_ports))}")
        self.named = {"stream worker" + ("s" if self.workers > 1 else ""): [w.pid for w in self.worker_procs],
                      "kafka": [self.kafka_pid] if self.kafka_pid else [], "postgres": _children(self.pg_pid)}

    def start_source(self, reg) -> None:
        """e2e: the private Mosquitto and the bridge; kafka: a producer in this process."""
        if self.broker is not None:
            self.broker.up(lambda m: None)
            bridge = Proc([VRESERVE, "ingest", "run", "--client-id", f"vr-bench-stream-{self.token}", "--status-json",
                           "--status-interval", "1", "--registry-refresh", "600"], _env(self.bench), "bridge")
            self.procs.append(bridge)
            if not bridge.wait_line('"note": "started"', 60):
                raise RuntimeError("bridge did not start:\n" + "\n".join(bridge.lines[-10:]))
            self.named.update({"bridge": [bridge.pid], "mosquitto": [self.broker.pid()]})
            self.echo("setup: bridge up")
        else:
            site_units = [(s.site_id, [(m, reg.materials[m].unit) for m in s.materials]) for s in reg.sites.values()]
            self.kafka_source = KafkaSource(self.bench, site_units, self.fleet_procs, self.state)
            self.named["producers"] = []

    def cpu_snapshot(self) -> dict[str, dict[int, float]]:
        self.named["postgres"] = _children(self.pg_pid)  # backends come and go: re-read every time
        return {k: {p: _cpu_seconds(p) for p in pids} for k, pids in self.named.items()}

    @staticmethod
    def cpu_percent(c0: dict, c1: dict, window: float) -> dict[str, float]:
        return {k: 100.0 * sum(c1[k][p] - c0.get(k, {}).get(p, c1[k][p]) for p in c1[k]) / window for k in c1}

    def start_load(self, rate: float, duration: float) -> tuple[list[Proc], threading.Thread | None, int]:
        """Offer ``rate`` messages/s for ``duration`` s: the fleet's shards (e2e) or the producer thread
        (kafka); returns the fleet, the thread and the producer's count before this step."""
        if self.broker is None:
            sent_before = self.kafka_source.sent
            thread = self.kafka_source.run(rate, duration)
            self.named["producers"] = self.kafka_source.pids
            self.procs.extend(self.kafka_source.current)
            return [], thread, sent_before
        fleet = fleet_shards(VRESERVE, _env(self.bench), sites=self.sites, seed=self.seed, id_prefix=self.id_prefix,
                             materials=self.materials, interval=self.sites / rate, gateways=self.gateways,
                             shards=self.fleet_procs, duration=duration)
        self.procs.extend(fleet)
        for f in fleet:
            if not f.wait_line("offered", 60):
                raise RuntimeError(f"fleet did not start: {f.lines[-5:]}")
        self.named["fleet"] = [f.pid for f in fleet]
        return fleet, None, 0

    def sent_messages(self, fleet: list[Proc], producer_thread: threading.Thread | None, sent_before: int) -> int:
        """Wait for the load to end; the messages it published (the fleet's own count, or the producer's)."""
        if self.broker is None:
            producer_thread.join(120)
            return self.kafka_source.sent - sent_before
        for f in fleet:
            f.proc.wait(60)
        sent_msgs = 0
        for f in fleet:
            for line in reversed(f.lines):
                if line.startswith("fleet stopped"):
                    sent_msgs += int(line.split(" sent ")[1].split()[0])
                    break
        return sent_msgs

    def drain(self) -> float | None:
        """The worker has everything once its readings count stops moving (2 s); seconds that took, or None
        if it was still moving after 45 s."""
        t_drain = time.monotonic()
        last = (_health_all(self.web_ports) or {}).get("readings", 0)
        still_since = time.monotonic()
        while time.monotonic() - t_drain < 45:
            time.sleep(0.5)
            now_readings = (_health_all(self.web_ports) or {}).get("readings", 0)
            if now_readings != last:
                last, still_since = now_readings, time.monotonic()
            elif time.monotonic() - still_since >= 2.0:
                return max(0.0, still_since - t_drain)
        return None

    def step(self, rate: float) -> Step:
        """Offer ``rate`` messages/s: warm up, measure the window from the workers' health counters, drain."""
        from stream.latency import delta, percentile  # lazy: see create

        duration = self.warmup_s + self.step_s + 0.5
        fleet, producer_thread, sent_before = self.start_load(rate, duration)
        time.sleep(self.warmup_s)
        h0, c0, w0 = _health_all(self.web_ports), self.cpu_snapshot(), time.time()
        time.sleep(self.step_s)
        h1, c1, w1 = _health_all(self.web_ports), self.cpu_snapshot(), time.time()
        window = w1 - w0
        cpu = self.cpu_percent(c0, c1, window)
        sent_msgs = self.sent_messages(fleet, producer_thread, sent_before)
        published_readings_s = sent_msgs * self.materials / duration
        drained_s = self.drain()
        h2 = _health_all(self.web_ports) or {}
        lat = delta(h1["latency_counts"], h0["latency_counts"])
        step = Step(rate=rate, published_readings_s=published_readings_s,
                    readings_s=(h1["readings"] - h0["readings"]) / window,
                    db_rows_s=(h1["history_rows"] - h0["history_rows"]) / window,
                    p50_ms=percentile(lat, 0.50), p99_ms=percentile(lat, 0.99), cpu=cpu,
                    rss_mib=sum(_rss_mib(w.pid) for w in self.worker_procs), keys=h2.get("table_keys", 0),
                    drained_s=drained_s,
                    sensor_to_kafka_ms=h1.get("last_sensor_to_kafka_ms"),
                    kafka_to_fold_ms=h1.get("last_kafka_to_fold_ms"),
                    batch_records=(h1["records"] - h0["records"]) / max(1, h1["batches"] - h0["batches"]),
                    writer_busy=(h1["db_write_s"] - h0["db_write_s"]) / window,
                    writer_steps=_steps_share(h0.get("write_steps_s", {}), h1.get("write_steps_s", {}), window),
                    note=f"{sent_msgs} msgs published in {duration:.0f} s"
                         + (f" (a producer started {self.kafka_source.late_s:.1f} s late)"
                            if self.kafka_source is not None and self.kafka_source.late_s > 0.5 else ""))
        if h2.get("dead_letters"):
            step.note += f"; {h2['dead_letters']} dead letters so far"
        return step

    def teardown(self) -> None:
        """Stop what this run started; drop its state dir, topics and database (each step best effort)."""
        from vreserve import kafka_clients  # lazy: see create
        from vreserve.db import connect
        from vreserve.kafka_access import ADMIN

        for p in self.procs:
            p.stop()
        if self.kafka_source is not None:
            self.kafka_source.close()
        if self.broker is not None:
            try:
                self.broker.down(lambda m: None)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                self.echo(f"could not stop the private Mosquitto: {exc}")
        shutil.rmtree(self.state, ignore_errors=True)
        try:
            admin = kafka_clients.admin(self.settings, ADMIN)
            try:
                mine = [t for t in admin.list_topics() if t.startswith(self.prefix)]
                if mine:
                    admin.delete_topics(mine)
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - a leftover bench topic is harmless
            self.echo(f"could not delete bench topics: {exc}")
        if self.created_db:
            try:
                with connect(self.admin_dsn, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001
                self.echo(f"could not drop {self.dbname}: {exc}")


def _format(step: Step, materials: int) -> str:
    cpu = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(step.cpu.items(), key=lambda kv: -kv[1]))
    lat = (f"p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms" if step.p50_ms is not None else "no commits in window")
    drained = f"drained {step.drained_s:.1f} s after the load stopped" if step.drained_s is not None else "NOT drained in 45 s"
    return (f"@ {step.rate:.0f} msgs/s offered ({step.rate * materials:.0f} readings/s): published "
            f"{step.published_readings_s:.0f} readings/s, worker committed {step.readings_s:.0f} readings/s, "
            f"DB {step.db_rows_s:.0f} rows/s | ts->queryable {lat} | worker RSS {step.rss_mib:.0f} MiB at "
            f"{step.keys} keys | {drained} | latency split: sensor->Kafka ~{_ms(step.sensor_to_kafka_ms)}, "
            f"Kafka->worker ~{_ms(step.kafka_to_fold_ms)}; {step.batch_records:.0f} records/batch, DB writer busy "
            f"{100 * step.writer_busy:.0f}%"
            + (" (" + ", ".join(f"{k} {100 * v:.0f}%" for k, v in step.writer_steps.items()) + ")"
               if step.writer_steps else "")
            + f" | CPU (% of one core) {cpu} | {step.note}")


def _steps_share(s0: dict, s1: dict, window: float) -> dict[str, float]:
    """The writer's steps (stream.stats.WorkerStats.write_steps_s) as shares of the window."""
    return {k: (s1[k] - s0.get(k, 0.0)) / window for k in s1}


def _ms(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f} ms"


def _summary(results: list[Step], sites: int, materials: int, source: str, echo, elapsed: float) -> None:
    echo("")
    echo(f"summary (source {source}; {sites} sites x {materials} materials; 2 shared cores, noisy; {elapsed:.0f} s):")
    echo(f"{'offered rd/s':>13} {'published':>10} {'committed':>10} {'DB rows/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
         f"{'RSS MiB':>8} {'keys':>7}  ok")
    for s in results:
        echo(f"{s.rate * materials:>13.0f} {s.published_readings_s:>10.0f} {s.readings_s:>10.0f} {s.db_rows_s:>10.0f} "
             f"{(s.p50_ms or 0):>7.0f} {(s.p99_ms or 0):>7.0f} {s.rss_mib:>8.0f} {s.keys:>7}  "
             f"{'yes' if s.sustained else 'NO'}")
    ok = [s for s in results if s.sustained]
    if ok:
        best = max(ok, key=lambda s: s.readings_s)
        top = " (every rate tried was sustained: the ceiling is at least this)" if len(ok) == len(results) else ""
        echo(f"ceiling: {best.readings_s:.0f} readings/s sustained with p99 {best.p99_ms:.0f} ms{top}; target "
             f"{TARGET_READINGS_S} readings/s with p99 < {TARGET_P99_MS:.0f} ms: "
             f"{'met' if best.readings_s >= 0.95 * TARGET_READINGS_S else 'NOT met'}")
    else:
        echo("ceiling: no rate was sustained (>= 95 % of published readings with p99 < 2 s)")
    if results:
        last = results[-1]
        busiest = max(last.cpu.items(), key=lambda kv: kv[1])
        echo(f"at the highest rate tried the busiest process was {busiest[0]} at {busiest[1]:.0f}% of one core "
             f"(single-threaded Python saturates at ~100%; the machine has 200% in total)")
        big = max(results, key=lambda s: s.keys)
        echo(f"worker memory: {big.rss_mib:.0f} MiB RSS (all workers) holding {big.keys} (site, material) keys")


@click.command("stream")
@click.option("--sites", default=10_000, show_default=True, type=int)
@click.option("--materials", default=10, show_default=True, type=int, help="Materials per site (readings per message).")
@click.option("--rates", default="500,1000,2000", show_default=True,
              help="Offered messages/s to try, rising (x materials = readings/s).")
@click.option("--step-seconds", default=20.0, show_default=True, type=float, help="Measured seconds per step.")
@click.option("--warmup-seconds", default=5.0, show_default=True, type=float)
@click.option("--fleet-procs", default=2, show_default=True, type=int,
              help="Fleet processes (e2e), or producer processes (--source kafka).")
@click.option("--gateways", default=4, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int,
              help="Stream worker processes (same group: Faust splits the partitions among them).")
@click.option("--writers", type=int, default=None,
              help="The workers' database writers (vreserve stream run --writers; default: theirs).")
@click.option("--source", type=click.Choice(["e2e", "kafka"]), default="e2e", show_default=True,
              help="e2e: fleet -> MQTT -> bridge -> Kafka; kafka: a Kafka producer of ReadingBatch records.")
@click.option("--backlog", type=int, default=None,
              help="Instead of rate steps: drain a backlog of this many records from Kafka with the worker and "
                   "with a plain consumer (bench/stream_baseline.py), and compare (e.g. 100000).")
@click.option("--order", default="worker,baseline", show_default=True,
              help="With --backlog: which contenders, in which order: worker, worker2 (two workers in one "
                   "group), baseline; a worker name ending in -wN runs with --writers N (e.g. worker-w1).")
@click.pass_obj
def command(settings: Settings, sites: int, materials: int, rates: str, step_seconds: float, warmup_seconds: float,
            fleet_procs: int, gateways: int, workers: int, writers: int | None, source: str, backlog: int | None, order: str) -> None:
    """Stream worker throughput, latency to queryable row, memory at 100k keys, database rows/s."""
    rate_list = parse_rates(rates)
    services_up(settings)
    if backlog:
        contenders = tuple(x.strip() for x in order.split(","))
        if not all(re.fullmatch(r"worker2?(-w\d+)?|baseline", c) for c in contenders):
            raise click.UsageError("--order takes worker, worker2 (each optionally -wN) and/or baseline, "
                                   "separated by commas")
        run_backlog(settings, records=backlog, sites=sites, materials=materials, order=contenders, echo=echo)
        return
    main(settings, sites=sites, materials=materials, rates=rate_list, step_s=step_seconds, warmup_s=warmup_seconds,
         fleet_procs=fleet_procs, gateways=gateways, source=source, workers=workers, echo=echo, writers=writers)
