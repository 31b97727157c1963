"""``vreserve bench ingest``: the MQTT -> Kafka bridge at rising rates, against a plain subscriber.

What runs (everything started here is stopped here):

* a PRIVATE Mosquitto (same config template, its own port and state folder), so the load never
  reaches other people's bridges on the shared broker, and their traffic does not skew ours;
* a private database (the 10k-site registry the bridge validates against) and two private Kafka
  topics created with ``message.timestamp.type=LogAppendTime``: a record's Kafka timestamp is the
  moment the broker appended it, so latency = append time - the reading's ``ts`` (set by the fleet
  when it published) is measured from the data, not from the bridge's own clock-keeping;
* the fleet (``vreserve simulate sites --auth gateway``, one or more shard processes), the bridge
  (``vreserve ingest run``) and, for the baseline, a plain paho subscriber that only counts.

For each rate the same fleet runs twice: once to the plain subscriber (baseline: what MQTT alone
delivers on this machine), once through the bridge. Figures per step: offered and sustained
messages/s and readings/s, p50/p99/max latency, CPU of every process (% of one core), ratio
bridge/baseline. The ceiling is the highest rate the bridge sustains (>= 95 % of what the fleet
published in the window) with p99 < 500 ms. The machine's two cores are shared: numbers are noisy.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import click

from vreserve import kafka_clients, topics
from vreserve.kafka_access import ADMIN, COMPONENTS
from vreserve.kafka_admin import ensure_acls
from vreserve.settings import Settings
from vreserve.tables import table
from bench.procs import Proc, child_env, fleet_shards, echo, parse_rates, services_up, cpu_seconds as _cpu_seconds, free_port as _free_port

VRESERVE = str(Path(sys.executable).with_name("vreserve"))

PLAIN_SUBSCRIBER = r"""
import sys, time, threading
from datetime import datetime
from vreserve.mqtt import connect, new_client
from vreserve.settings import Settings
addr = Settings.from_env().mqtt  # the account's password comes from the environment, never argv
cid = sys.argv[1]
count = 0
lat = []
def on_message(c, u, m):
    global count
    count += 1
    i = m.payload.find(b'"ts":"')
    if i >= 0:
        ts = datetime.fromisoformat(m.payload[i + 6:i + 30].decode().replace("Z", "+00:00")).timestamp()
        lat.append((time.time(), (time.time() - ts) * 1000.0))
c = new_client(addr, cid, clean_session=True)
c.on_message = on_message
c.on_connect = lambda c, u, f, rc, p: (c.subscribe("vr/v1/sites/+/stock", qos=1), print("ready", flush=True))
connect(c, addr, keepalive=30)
c.loop_start()
while True:
    time.sleep(0.25)
    batch, lat[:] = lat[:], []
    print(f"{time.time():.3f} {count} " + " ".join(f"{a:.3f}:{b:.1f}" for a, b in batch), flush=True)
"""


@dataclass
class Step:
    rate: float  # offered messages/s (sites / interval)
    mode: str  # "bridge" or "baseline"
    published_per_s: float = 0.0
    delivered_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core
    note: str = ""


def _env(settings: Settings) -> dict:
    return child_env(settings)


def main(settings: Settings, sites: int = 10_000, materials: int = 20, rates: tuple[float, ...] = (1000, 2000, 3000, 4000),
         step_s: float = 12.0, warmup_s: float = 5.0, gateways: int = 4, fleet_procs: int = 2,
         baseline: bool = True, bridges: int = 1, bridge_args: tuple[str, ...] = (), echo=print) -> list[Step]:
    """The baseline at each rate, then the bridge at each rate until it no longer keeps up."""
    # Metadata for a just-created topic can lag a moment; kafka-python logs that as an ERROR.
    logging.getLogger("kafka.cluster").setLevel(logging.CRITICAL)
    run = _IngestBench.create(settings, sites, materials, gateways, fleet_procs, warmup_s, step_s, echo)
    results: list[Step] = []
    t_start = time.monotonic()
    try:
        run.setup()
        if baseline:
            for rate in rates:
                results.append(run.baseline_step(rate))
                echo(_format(results[-1], materials))
        run.start_bridges(bridges, bridge_args)
        for rate in rates:
            step, drained = run.bridge_step(rate, "bridge" if bridges == 1 else f"{bridges} bridges")
            results.append(step)
            echo(_format(step, materials))
            run.say_dead_letters()
            if not drained or not _sustained(step):
                echo("  -> the bridge did not sustain this rate; higher rates skipped")
                break
        run.consumer.close()
    finally:
        run.teardown()
    _summary(results, materials, sites, echo, time.monotonic() - t_start)
    return results


@dataclass
class _IngestBench:
    """One bench run's private broker, database, topics and processes (all removed by teardown)."""

    settings: Settings
    bench: Settings
    token: str
    dbname: str
    admin_dsn: str
    mqtt_port: int
    sites: int
    materials: int
    gateways: int
    fleet_procs: int
    warmup_s: float
    step_s: float
    echo: Callable[[str], None]
    broker: Any = None
    kafka_pid: int | None = None
    admin: Any = None
    consumer: Any = None
    parts: list = field(default_factory=list)
    created_topics: list[str] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    bridge_procs: list[Proc] = field(default_factory=list)
    seed: int = 11

    @classmethod
    def create(cls, settings: Settings, sites: int, materials: int, gateways: int, fleet_procs: int,
               warmup_s: float, step_s: float, echo) -> "_IngestBench":
        # lazy: bench modules are mounted on `vreserve --help`; kafka and psycopg cost ~1 s to import
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from deploy.runner import Kafka, Mosquitto

        token = uuid.uuid4().hex[:6]
        state = Path(tempfile.mkdtemp(prefix="vr-bench-ingest-"))
        addr = settings.mqtt
        mqtt_port = _free_port()
        info = conninfo_to_dict(settings.pg_dsn)
        dbname = f"vr_bench_{token}"
        bench = settings.with_(
            topic_prefix=f"bench{token}.",
            pg_dsn=make_conninfo(**{**info, "dbname": dbname}),
            mqtt_url=f"{'mqtts' if addr.tls else 'mqtt'}://{addr.username}:{addr.password}@127.0.0.1:{mqtt_port}",
            state_dir=state,
        )
        admin_dsn = make_conninfo(**{**info, "dbname": info.get("dbname") or "postgres"})
        run = cls(settings, bench, token, dbname, admin_dsn, mqtt_port, sites, materials, gateways, fleet_procs,
                  warmup_s, step_s, echo)
        run.broker = Mosquitto(bench)
        run.kafka_pid = Kafka(settings).pid()
        run.admin = kafka_clients.admin(settings, ADMIN)
        return run

    @property
    def id_prefix(self) -> str:
        return f"b{self.token}-"

    def setup(self) -> None:
        """Private broker up, the database with the registry, the two topics, a reading consumer."""
        from kafka import TopicPartition  # lazy: see create
        from kafka.admin import NewTopic

        from vreserve.registry_generate import generate_registry
        from vreserve.registry_store import store_registry
        from vreserve.db import connect, migrate

        settings, bench = self.settings, self.bench
        self.echo(f"setup: private Mosquitto on 127.0.0.1:{self.mqtt_port}, database {self.dbname}, "
                  f"topic prefix {bench.topic_prefix}")
        self.broker.up(lambda m: None)
        with connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        migrate(bench.pg_dsn)
        t0 = time.monotonic()
        reg = generate_registry(self.sites, seed=self.seed, id_prefix=self.id_prefix,
                                materials_per_site=self.materials)
        # The bridge checks sites and the catalogue only: contracts of 200k (site, material) pairs
        # would take half a minute to store here and play no part in the measurement.
        bare = replace(reg, sites={k: replace(v, materials={}) for k, v in reg.sites.items()})
        with connect(bench.pg_dsn) as conn:
            store_registry(conn, bare)
        self.echo(f"setup: {self.sites} sites (x {self.materials} materials each in the fleet) stored in "
                  f"{time.monotonic() - t0:.1f} s")
        for name in (topics.READINGS, topics.READINGS_DEAD_LETTER):
            self.created_topics.append(bench.topic(name))
        self.admin.create_topics([NewTopic(t, num_partitions=settings.partitions, replication_factor=1,
                                           topic_configs={"message.timestamp.type": "LogAppendTime"})
                                  for t in self.created_topics])
        if kafka_clients.secured(bench):
            ensure_acls(bench, COMPONENTS)  # the bridge's grants under the bench's topic prefix
        self.consumer = kafka_clients.consumer(settings, ADMIN, enable_auto_commit=False, group_id=None)
        self.parts = [TopicPartition(bench.topic(topics.READINGS), p) for p in range(settings.partitions)]
        self.consumer.assign(self.parts)

    def fleet(self, interval: float, duration: float) -> list[Proc]:
        """The fleet's shard processes, publishing every ``interval`` s for ``duration`` s."""
        out = fleet_shards(VRESERVE, _env(self.bench), sites=self.sites, seed=self.seed, id_prefix=self.id_prefix,
                           materials=self.materials, interval=interval, gateways=self.gateways,
                           shards=self.fleet_procs, duration=duration)
        self.procs.extend(out)
        return out

    def run_fleet_measured(self, rate: float,
                           named: dict[str, list[int]]) -> tuple[list[Proc], float, float, dict[str, float]]:
        """Run the fleet at ``rate``; returns it, the measured window and each process's CPU (%)."""
        fl = self.fleet(self.sites / rate, self.warmup_s + self.step_s + 0.5)
        for f in fl:
            if not f.wait_line("offered", 60):
                raise RuntimeError(f"fleet did not start: {f.lines[-5:]}")
        named = {**named, "fleet": [f.pid for f in fl]}
        time.sleep(self.warmup_s)
        w0, c0 = time.time(), _cpu_snapshot(named)
        time.sleep(self.step_s)
        w1, c1 = time.time(), _cpu_snapshot(named)
        cpu = {k: 100.0 * (c1[k] - c0[k]) / (w1 - w0) for k in named}
        for f in fl:
            f.proc.wait(30)
        return fl, w0, w1, cpu

    def baseline_step(self, rate: float) -> Step:
        """The same fleet to a plain counting subscriber (no bridge subscribed yet)."""
        sub = Proc([sys.executable, "-c", PLAIN_SUBSCRIBER, f"vr-bench-plain-{self.token}"], _env(self.bench), "plain")
        self.procs.append(sub)
        if not sub.wait_line("ready", 20):
            raise RuntimeError(f"plain subscriber did not start: {sub.lines[-5:]}")
        fl, w0, w1, cpu = self.run_fleet_measured(rate, {"mosquitto": [self.broker.pid()], "plain subscriber": [sub.pid]})
        time.sleep(1.0)
        rows = [ln.split() for ln in sub.lines if ln[:1].isdigit()]
        sub.stop()
        samples = [(float(r[0]), int(r[1])) for r in rows]
        lat = sorted(float(b) for r in rows for a, b in (x.split(":") for x in r[2:]) if w0 <= float(a) < w1)
        inside = [s for s in samples if w0 <= s[0] <= w1]
        got = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else 0.0
        return Step(rate, "baseline", published_per_s=0.0, delivered_per_s=got, cpu=cpu,
                    p50_ms=lat[len(lat) // 2] if lat else None, p99_ms=lat[int(len(lat) * 0.99)] if lat else None,
                    max_ms=lat[-1] if lat else None,
                    note=f"fleet sent {_fleet_sent(fl)} msgs in {self.warmup_s + self.step_s + 0.5:.0f} s")

    def start_bridges(self, bridges: int, bridge_args: tuple[str, ...]) -> None:
        """Several bridges share the subscription ($share group): Mosquitto deals messages among them."""
        for i in range(bridges):
            b = Proc([VRESERVE, "ingest", "run", "--client-id", f"vr-bench-bridge-{self.token}-{i}", "--status-json",
                      "--status-interval", "1", "--registry-refresh", "600", *bridge_args], _env(self.bench), f"bridge{i}")
            self.bridge_procs.append(b)
            if not b.wait_line('"note": "started"', 60):
                raise RuntimeError(f"bridge did not start: {b.lines[-10:]}")

    def bridge_step(self, rate: float, label: str) -> tuple[Step, bool]:
        """The fleet at ``rate`` through the bridge(s); returns the step and whether it drained."""
        start_offsets = self.consumer.end_offsets(self.parts)
        named = {label: [b.pid for b in self.bridge_procs], "mosquitto": [self.broker.pid()], "kafka": [self.kafka_pid]}
        fl, w0, w1, cpu = self.run_fleet_measured(rate, named)
        sent = _fleet_sent(fl)
        drained, lag = self.drain(sent, start_offsets)
        lat, published, delivered = self.read_back(start_offsets, w0, w1)
        window = w1 - w0
        step = Step(rate, "bridge", published_per_s=published / window, delivered_per_s=delivered / window, cpu=cpu,
                    p50_ms=lat[len(lat) // 2] if lat else None, p99_ms=lat[int(len(lat) * 0.99)] if lat else None,
                    max_ms=lat[-1] if lat else None,
                    note=("" if drained else f"NOT drained 30 s after the fleet stopped: {lag} msgs behind; ")
                    + f"fleet sent {sent} msgs")
        return step, drained

    def drain(self, sent: int, start_offsets: dict, timeout_s: float = 30) -> tuple[bool, int | None]:
        """Wait until the bridge has forwarded what the fleet sent (or give up after ``timeout_s``)."""
        lag = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            end = self.consumer.end_offsets(self.parts)
            lag = sent - sum(end[p] - start_offsets[p] for p in self.parts)
            if lag <= 0:
                return True, lag
            time.sleep(0.5)
        return False, lag

    def read_back(self, start_offsets: dict, w0: float, w1: float) -> tuple[list[float], int, int]:
        """The step's records: sorted latencies (ms) of those published in the window, how many were
        published in it (by reading ts) and how many Kafka appended in it."""
        end_offsets = self.consumer.end_offsets(self.parts)
        lat, published, delivered = [], 0, 0
        for p in self.parts:
            self.consumer.seek(p, start_offsets[p])
        remaining = {p: end_offsets[p] - start_offsets[p] for p in self.parts}
        while any(v > 0 for v in remaining.values()):
            polled = self.consumer.poll(timeout_ms=1000, max_records=5000)
            if not polled:
                break
            for tp, recs in polled.items():
                for r in recs:
                    if r.offset >= end_offsets[tp]:
                        continue
                    remaining[tp] -= 1
                    body = json.loads(r.value)
                    ts = datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp()
                    appended = r.timestamp / 1000.0
                    if w0 <= ts < w1:
                        published += 1
                        lat.append((appended - ts) * 1000.0)
                    if w0 <= appended < w1:
                        delivered += 1
        lat.sort()
        return lat, published, delivered

    def say_dead_letters(self) -> None:
        for b in self.bridge_procs:
            status = next((json.loads(ln) for ln in reversed(b.lines) if ln.startswith("{")), {})
            if status.get("dead_lettered"):
                self.echo(f"  {b.name} dead-lettered {status['dead_lettered']} messages: {status.get('reasons')}")

    def teardown(self) -> None:
        """Stop every process and the private broker; delete the topics and the database."""
        from vreserve.db import connect  # lazy: see create

        for p in self.procs:
            p.stop()
        for b in self.bridge_procs:
            b.stop()
        try:
            self.broker.down(lambda m: None)
        finally:
            shutil.rmtree(self.bench.state_dir, ignore_errors=True)
        try:
            if self.created_topics:
                self.admin.delete_topics(self.created_topics)
        except Exception as exc:  # best effort: a leftover bench topic is harmless
            self.echo(f"could not delete bench topics: {exc}")
        self.admin.close()
        try:
            with connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        except Exception as exc:
            self.echo(f"could not drop {self.dbname}: {exc}")


def _cpu_snapshot(named: dict[str, list[int]]) -> dict[str, float]:
    return {k: sum(_cpu_seconds(p) for p in pids) for k, pids in named.items()}


def _fleet_sent(fl: list[Proc]) -> int:
    """Messages the fleet processes say they sent (their "fleet stopped" line)."""
    total = 0
    for f in fl:
        for line in reversed(f.lines):
            if line.startswith("fleet stopped"):
                total += int(line.split(" sent ")[1].split()[0])
                break
    return total


def _sustained(step: Step) -> bool:
    return (step.published_per_s > 0 and step.delivered_per_s >= 0.95 * step.published_per_s
            and step.p99_ms is not None and step.p99_ms < 500)


def _format(step: Step, materials: int) -> str:
    cpu = ", ".join(f"{k} {v:.0f}%" for k, v in step.cpu.items())
    if step.mode == "baseline":
        lat = f"p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms" if step.p50_ms is not None else "no data"
        return (f"baseline @ {step.rate:.0f} msgs/s offered: plain subscriber got {step.delivered_per_s:.0f} msgs/s "
                f"({step.delivered_per_s * materials:.0f} readings/s), publish->receive {lat} | CPU {cpu} | {step.note}")
    lat = f"p50 {step.p50_ms:.0f} ms, p99 {step.p99_ms:.0f} ms, max {step.max_ms:.0f} ms" if step.p50_ms is not None else "no data"
    return (f"bridge   @ {step.rate:.0f} msgs/s offered: fleet published {step.published_per_s:.0f} msgs/s, bridge "
            f"delivered {step.delivered_per_s:.0f} msgs/s = {step.delivered_per_s * materials:.0f} readings/s | "
            f"publish->Kafka append {lat} | CPU {cpu} | {step.note}")


def _summary(results: list[Step], materials: int, sites: int, echo, elapsed: float) -> None:
    bridge = [s for s in results if s.mode == "bridge"]
    base = {s.rate: s for s in results if s.mode == "baseline"}
    echo("")
    echo(f"summary ({sites} sites x {materials} materials; CPU in % of one core; 2 shared cores, noisy; {elapsed:.0f} s):")
    rows = []
    for s in bridge:
        b = base.get(s.rate)
        ratio = f"{s.delivered_per_s / b.delivered_per_s:.2f}" if b and b.delivered_per_s else "-"
        rows.append([f"{s.rate:,.0f}", f"{s.delivered_per_s:,.0f}", f"{s.delivered_per_s * materials:,.0f}",
                     f"{s.p50_ms or 0:,.0f}", f"{s.p99_ms or 0:,.0f}", f"{b.delivered_per_s if b else 0:,.0f}", ratio,
                     "yes" if _sustained(s) else "NO"])
    for line in table(["offered msgs/s", "bridge msgs/s", "readings/s", "p50 ms", "p99 ms", "plain msgs/s",
                       "ratio", "ok"], rows).splitlines():
        echo(line)
    ok = [s for s in bridge if _sustained(s)]
    if ok:
        best = max(ok, key=lambda s: s.delivered_per_s)
        top = "" if len(ok) < len(bridge) else " (every rate tried was sustained: the ceiling is at least this)"
        echo(f"ceiling: {best.delivered_per_s:.0f} msgs/s = {best.delivered_per_s * materials:.0f} readings/s sustained "
             f"with p99 {best.p99_ms:.0f} ms{top}; target 20000 readings/s with p99 < 500 ms: "
             f"{'met' if best.delivered_per_s * materials >= 20000 * 0.95 else 'NOT met'}")
    else:
        echo("ceiling: no rate was sustained with p99 < 500 ms")


@click.command("ingest")
@click.option("--sites", default=10_000, show_default=True, type=int)
@click.option("--materials", default=20, show_default=True, type=int, help="Readings per message.")
@click.option("--rates", default="1000,2000,3000,4000", show_default=True,
              help="Offered messages/s to try, rising (x materials = readings/s).")
@click.option("--step-seconds", default=12.0, show_default=True, type=float, help="Measured seconds per step.")
@click.option("--warmup-seconds", default=5.0, show_default=True, type=float)
@click.option("--fleet-procs", default=2, show_default=True, type=int, help="Fleet processes (shards).")
@click.option("--gateways", default=4, show_default=True, type=int, help="MQTT connections of the fleet in total.")
@click.option("--bridges", default=1, show_default=True, type=int,
              help="Bridge processes sharing the subscription (scale-out; per-site order then not guaranteed).")
@click.option("--bridge-args", default="", help="Extra options for `vreserve ingest run`, e.g. '--linger-ms 20 --batch-kib 1024'.")
@click.option("--no-baseline", is_flag=True, help="Skip the plain-subscriber baseline.")
@click.pass_obj
def command(settings: Settings, sites: int, materials: int, rates: str, step_seconds: float, warmup_seconds: float,
            fleet_procs: int, gateways: int, bridges: int, bridge_args: str, no_baseline: bool) -> None:
    """Bridge throughput and publish->Kafka latency at rising rates vs a plain MQTT subscriber."""
    rate_list = parse_rates(rates)
    services_up(settings)
    main(settings, sites=sites, materials=materials, rates=rate_list, step_s=step_seconds, warmup_s=warmup_seconds,
         gateways=gateways, fleet_procs=fleet_procs, baseline=not no_baseline, bridges=bridges,
         bridge_args=tuple(bridge_args.split()), echo=echo)
