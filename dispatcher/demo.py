"""``vreserve demo``: the main job, end to end, on the real services.

services up -> its own database and topics -> a registry of a few hundred sites over the city grid
-> sensor fleet, bridge, stream worker, dispatcher and logistics simulator running (as `vreserve`
subprocesses) -> the virtual warehouse fills from live readings -> the Wuhan-like scenario declared
as an emergency -> each period re-planned from live stock, orders flowing and delivered, picked
stock falling at the sites -> the emergency ended -> final report (JSON + PNG). Every subprocess is
stopped at the end, also on Ctrl-C or an error.

The demo runs in a database of its own (``vreserve_demo``, recreated every run) and under a topic
prefix of its own (``demo<run>.``; older demo topics are deleted at the start), so it never mixes
with tests or other work on the same services.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import click

from vreserve.settings import PROJECT_ROOT, Settings


#: Lines of the services' own logs not echoed live (still in the log files): client-library chatter.
_NOISE = ("DEBUG", "producer buffer full", "Timer commit is overlapping", "Timer Monitor.sampler")


@dataclass
class Stack:
    """The demo's subprocesses: started with logs in ``log_dir``, echoed live, always stopped."""

    env: dict
    log_dir: Path
    t0: float
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    echo: bool = True
    #: every line each subprocess printed so far (to wait for a "ready" line)
    lines: dict[str, list[str]] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        print(f"[demo {time.monotonic() - self.t0:6.1f} s] {msg}", flush=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        p = subprocess.Popen([sys.executable, "-m", "vreserve.cli", *args], cwd=PROJECT_ROOT, env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             start_new_session=True)
        self.procs.append((name, p))
        threading.Thread(target=self._pump, args=(name, p, log_path), daemon=True).start()
        self.say(f"started {name} (pid {p.pid}): vreserve {' '.join(args)}")
        return p

    def _pump(self, name: str, p: subprocess.Popen, log_path: Path) -> None:
        seen = self.lines.setdefault(name, [])
        with open(log_path, "w") as log:
            for line in p.stdout:  # type: ignore[union-attr]
                seen.append(line)
                log.write(line)
                log.flush()
                if self.echo and not any(noise in line for noise in _NOISE):
                    print(f"  [{name}] {line.rstrip()[:220]}", flush=True)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "vreserve.cli", *args], cwd=PROJECT_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        for line in (res.stdout + res.stderr).splitlines():
            print(f"  [vreserve {args[0]}] {line[:220]}", flush=True)
        return res

    def wait_line(self, name: str, text: str, timeout: float) -> None:
        """Wait until subprocess ``name`` printed a line containing ``text`` (its "ready" line)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines.get(name, []))):
            self.check_alive()
            if time.monotonic() > deadline:
                raise click.ClickException(f"{name} did not say {text!r} within {timeout:g} s; "
                                           f"see {self.log_dir}/{name}.log")
            time.sleep(0.1)

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise click.ClickException(f"{name} exited with code {p.returncode}; see {self.log_dir}/{name}.log")

    def stop_all(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop on SIGTERM; killing it")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        left = [name for name, p in self.procs if p.poll() is None]
        self.say("all demo processes stopped" if not left else f"still running: {left}")


def _api_addr(settings: Settings) -> str:
    """VR_HTTP_ADDR when its port is free, else a free loopback port (another API may be running)."""
    host, port = settings.http_host_port
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return f"{host}:{port}"
        except OSError:
            return f"127.0.0.1:{_free_port()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _console_login(dsn: str, out: Path, api_addr: str, say) -> str:
    """A demo operator for the console that `vreserve serve` shows at / (its password goes to a 0600
    file, never to the screen or the logs). Returns the line that tells a person where to look."""
    from vreserve import identity as ident
    from vreserve.db import connect

    password = secrets.token_urlsafe(12)
    with connect(dsn, autocommit=True) as conn:
        ident.add_user(conn, "demo-operator", "operator", password, "demo")
    login = out / "console-login.txt"
    login.touch(mode=0o600)
    login.chmod(0o600)
    login.write_text(f"user: demo-operator\npassword: {password}\n")
    line = f"console: http://{api_addr}/ (user demo-operator, password in {login})"
    say(line)
    return line


def _fresh_database(settings: Settings, name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect

    info = conninfo_to_dict(settings.pg_dsn)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(**{**info, "dbname": name})


#: A demo's topic prefix (``demo<run id>.``) and its bridge's MQTT client id (``<prefix>bridge-1``).
_DEMO_PREFIX = re.compile(r"demo[0-9a-f]{6}\.")
_DEMO_BRIDGE = re.compile(rb"demo[0-9a-f]{6}\.bridge-1")


def _drop_old_demo_topics(settings: Settings, keep_prefix: str) -> tuple[int, set[str], set[str]]:
    """Delete earlier demos' topics; returns (topics deleted, their prefixes, prefixes still alive).

    Only the default demo does this (see ``--database``); "alive" is every demo prefix left with a
    topic (the current one), whose bridge session must not be touched.
    """
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    admin = kafka_clients.admin(settings, ADMIN, request_timeout_ms=15000)
    try:
        names = admin.list_topics()
        old = [t for t in names if t.startswith("demo") and not t.startswith(keep_prefix)]
        if old:
            admin.delete_topics(old)
        prefixes = {m.group(0) for t in old if (m := _DEMO_PREFIX.match(t))}
        alive = {m.group(0) for t in names if t.startswith(keep_prefix) and (m := _DEMO_PREFIX.match(t))}
        return len(old), prefixes, alive
    finally:
        admin.close()


def leftover_demo_sessions(settings: Settings, old_prefixes: set[str], keep_prefixes: set[str]) -> list[str]:
    """MQTT client ids of bridges of earlier demos whose persistent sessions may still be queued.

    The bridge of prefix P is ``P + "bridge-1"``. Candidates: the prefixes of the old topics being
    deleted, and the demo bridge ids found in the local Mosquitto's persistence file (the broker
    has no API to list sessions; sessions of demos run before ``--end-session-on-stop`` existed are
    only known there). ``keep_prefixes`` (demos that still have topics) are never touched.
    """
    ids = {f"{p}bridge-1" for p in old_prefixes}
    db = Path(settings.state_dir) / "mosquitto" / "data" / "mosquitto.db"
    try:
        with open(db, "rb") as f:
            ids |= {m.decode() for m in set(_DEMO_BRIDGE.findall(f.read()))}
    except OSError:
        pass  # not the local broker, or no persistence file yet
    return sorted(i for i in ids if not any(i.startswith(k) for k in keep_prefixes))


def end_demo_sessions(settings: Settings, client_ids: list[str], say=print) -> int:
    """End each session (connect once with a clean session); returns how many were ended."""
    from ingest.bridge import end_session

    ended = 0
    for cid in client_ids:
        try:
            end_session(settings, cid, timeout=5)
            ended += 1
        except Exception as exc:  # best effort: a leftover session only wastes broker memory
            say(f"could not end the MQTT session {cid}: {exc}")
    return ended


def pack_supply(base: dict) -> dict[str, float]:
    """Units per material the scenario's own supply sites offer over its whole horizon."""
    from dispatcher.live import as_series

    out: dict[str, float] = {}
    for site in base.get("supply_sites") or []:
        for m, series in (site.get("supply") or {}).items():
            out[m] = out.get(m, 0.0) + sum(as_series(series, base["periods"]))
    return out


def size_registry_to_pack(registry, base: dict, region: str):
    """The registry with each pack material's contracted stock in ``region`` sized to the pack's supply.

    Why: the generated registry holds city-scale stock (about 50x the wuhan pack's demand at
    300 sites), so nothing would ever be short and urgency would never matter. The source scenario
    is short by design: its supply sites plus the centres' usable stock cover 90 % of the 10-period
    demand (optimizer/packs.py). Here the live registry REPLACES the pack's supply sites, so each
    material's contracted quantity over the region's sites is scaled to what the pack's supply
    sites offer over the horizon (sum of their supply series): live supply + centres' usable stock
    ~ 90 % of the demand, as in the source. The fleet then starts each site at 95-110 % of contract
    and the plan counts min(reported, contracted) x trust, so live supply lands a little under the
    target (more so for few-unit materials such as ventilators, whose readings are whole units).

    Each material keeps the generated registry's spread over sites (proportional scaling, whole
    units by largest remainder, the total hits the target exactly); a site left with 0 units of a
    material loses that contract. Materials outside the pack are left alone. Returns the new
    registry and per material {"target", "before", "after", "sites"}.
    """
    import dataclasses

    targets = pack_supply(base)
    sites = dict(registry.sites)
    figures = {}
    for m, target in sorted(targets.items()):
        holders = sorted(sid for sid, st in sites.items() if st.region == region and m in st.materials)
        before = sum(float(sites[sid].materials[m].contracted_qty) for sid in holders)
        if not holders or before <= 0:
            figures[m] = {"target": target, "before": before, "after": 0.0, "sites": 0}
            continue
        goal = int(round(target))
        exact = {sid: float(sites[sid].materials[m].contracted_qty) * goal / before for sid in holders}
        whole = {sid: int(v) for sid, v in exact.items()}
        rest = goal - sum(whole.values())
        for sid in sorted(holders, key=lambda k: (-(exact[k] - whole[k]), k))[:rest]:
            whole[sid] += 1
        for sid in holders:
            mats = dict(sites[sid].materials)
            if whole[sid] > 0:
                mats[m] = dataclasses.replace(mats[m], contracted_qty=float(whole[sid]))
            else:
                del mats[m]
            sites[sid] = dataclasses.replace(sites[sid], materials=mats)
        figures[m] = {"target": target, "before": before, "after": float(sum(whole.values())),
                      "sites": sum(1 for v in whole.values() if v > 0)}
    return dataclasses.replace(registry, sites=sites), figures


@click.command("demo")
@click.option("--sites", type=click.IntRange(10, 5000), default=300, show_default=True,
              help="Sites in the generated registry.")
@click.option("--region", default="wuhan", show_default=True)
@click.option("--scenario", default="wuhan", show_default=True, help="Scenario pack (centres and demand).")
@click.option("--periods", type=click.IntRange(1, 10), default=10, show_default=True,
              help="Periods of the pack's horizon to run (the pack's supply is sized for all 10).")
@click.option("--period-length", default="15s", show_default=True)
@click.option("--demand-scale", type=float, default=1.0, show_default=True)
@click.option("--interval", type=float, default=2.0, show_default=True, help="Sites' reading interval, s.")
@click.option("--fail-rate", type=float, default=0.02, show_default=True, help="Share of orders logistics fails.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--stock-from-pack/--city-stock", default=True, show_default=True,
              help="Size the registry's stock of the pack's materials to the pack's own supply (a "
                   "shortage like the source's), or keep the generated city-scale stock.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/demo", show_default=True)
@click.option("--quiet", is_flag=True, help="Do not echo the services' own progress lines.")
@click.option("--database", default="vreserve_demo", show_default=True,
              help="Database of the demo (dropped and recreated). With another name than the default, "
                   "earlier demos' topics are left alone (tests run the demo this way).")
@click.pass_obj
def demo(settings: Settings, sites, region, scenario, periods, period_length, demand_scale, interval, fail_rate,
         seed, stock_from_pack, out_dir, quiet, database) -> None:
    """The main job: a full emergency scenario on live services, end to end, with a final report."""
    from deploy import runner
    from dispatcher.operator import parse_duration
    from dispatcher.report import emergency_report, print_report, write_report
    from dispatcher.live import in_registry_units
    from ingest.registry import generate_registry, write_registry
    from optimizer import load_scenario
    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    t0 = time.monotonic()
    out = Path(out_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    length_s = parse_duration(period_length)
    run_id = uuid.uuid4().hex[:6]

    def say(msg: str) -> None:
        print(f"[demo {time.monotonic() - t0:6.1f} s] {msg}", flush=True)

    say("starting the services (Kafka, Mosquitto, PostgreSQL)")
    runner.up(settings, progress=lambda m: say(f"services: {m}"))
    dsn = _fresh_database(settings, database)
    demo_settings = settings.with_(pg_dsn=dsn, topic_prefix=f"demo{run_id}.", reading_interval_s=interval)
    sessions_ended = 0
    dropped = 0
    if database == "vreserve_demo":  # the default demo cleans up after earlier ones (tests' runs do not)
        dropped, old_prefixes, alive = _drop_old_demo_topics(settings, demo_settings.topic_prefix)
        leftover = leftover_demo_sessions(settings, old_prefixes, alive | {demo_settings.topic_prefix})
        sessions_ended = end_demo_sessions(settings, leftover, say)
    variant = migrate(dsn, progress=lambda m: None).variant
    ensure_topics(demo_settings)
    say(f"database {database} migrated ({variant.name} variant: {variant.reason}); topics under prefix {demo_settings.topic_prefix!r} created"
        f"{f' ({dropped} topics of earlier demos deleted)' if dropped else ''}"
        f"{f'; {sessions_ended} MQTT sessions of earlier demo bridges ended' if sessions_ended else ''}")
    base = load_scenario(scenario).to_dict()

    registry_path = out / "registry.yaml"
    creds_path = out / "mqtt-credentials.yaml"
    # The default demo's sites are wuhan-00001...; any other run (tests, with --database) gets site ids
    # of its own: site ids are MQTT client ids and user names on the shared broker, and two fleets
    # with the same ids would take each other's connections over and overwrite each other's passwords.
    id_prefix = None if database == "vreserve_demo" else f"{region}-{run_id}-"
    registry = generate_registry(sites, seed=seed, region=region, id_prefix=id_prefix)
    # the pack's figures in the registry's units (e.g. 500 ml bottles of alcohol as litres), so the
    # sizing below and the report count what the sites count
    base, _unit_notes = in_registry_units(base, registry.material_units())
    sizing = None
    if stock_from_pack:
        registry, sizing = size_registry_to_pack(registry, base, region)
        say("registry stock sized to the pack's own supply (so the region is short like the source): "
            + "; ".join(f"{m} {f['before']:,.0f} -> {f['after']:,.0f} at {f['sites']} sites"
                        for m, f in sizing.items()))
    write_registry(registry, registry_path)
    n_central = sum(1 for s in registry.sites.values() if s.tier == "centralized")
    n_cells = len({s.grid_cell for s in registry.sites.values()})
    say(f"registry: {sites} sites ({n_central} centralized depots, {sites - n_central} decentralized) "
        f"over {n_cells} grid cells of {region}, written to {registry_path}")

    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_KAFKA_BOOTSTRAP=demo_settings.kafka_bootstrap, VR_MQTT_URL=demo_settings.mqtt_url,
               VR_PG_DSN=dsn, VR_TOPIC_PREFIX=demo_settings.topic_prefix,
               VR_PARTITIONS=str(demo_settings.partitions), VR_STATE_DIR=str(demo_settings.state_dir),
               VR_MQTT_CA_FILE=demo_settings.mqtt_ca_file, VR_KAFKA_SECURITY=demo_settings.kafka_security,
               VR_KAFKA_CA_FILE=demo_settings.kafka_ca_file, VR_SECRETS_DIR=demo_settings.secrets_dir,
               VR_READING_INTERVAL_S=str(interval), VR_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    stack = Stack(env, out / "logs", t0, echo=not quiet)
    report = None
    try:
        res = stack.run("registry", "load", str(registry_path), "--mqtt-credentials", str(creds_path))
        if res.returncode != 0:
            raise click.ClickException("registry load failed")
        stack.start("stream", "stream", "run", "--web-port", str(_free_port()), "--aggregate-interval", "5")
        # a throw-away bridge: its persistent MQTT session is deleted when it stops, so the broker
        # does not keep queueing its share of all site traffic after the demo
        stack.start("bridge", "ingest", "run", "--status-interval", "10", "--end-session-on-stop")
        # the bridge says "started" only once its subscription is acknowledged (SUBACK): a reading
        # published before a new bridge's first subscription exists has no session to wait in and
        # would be dropped by the broker, so the fleet starts only then
        stack.wait_line("bridge", "bridge started", 60)
        stack.start("fleet", "simulate", "sites", "--registry", str(registry_path), "--credentials",
                    str(creds_path), "--interval", str(interval), "--progress-every", "10", "--end-sessions-on-stop")
        stack.start("dispatcher", "dispatch", "run", "--time-limit", str(max(5.0, length_s / 2)))
        stack.start("logistics", "simulate", "logistics", "--accept", "1", "--pick", f"{min(3.0, length_s / 5):g}",
                    "--deliver", f"{min(8.0, length_s / 2.5):g}", "--fail-rate", str(fail_rate))
        api_addr = _api_addr(settings)
        stack.start("api", "serve", "--addr", api_addr)
        say(f"HTTP API of this demo: http://{api_addr}/api/docs (create a login with `vreserve users add NAME "
            f"--role operator` and VR_PG_DSN pointing at database {database}; docs/api.md)")
        console = _console_login(dsn, out, api_addr, say)

        conn = connect(dsn, autocommit=True)
        # 1. the virtual warehouse fills from live readings
        deadline = time.monotonic() + 120
        while True:
            stack.check_alive()
            n = conn.execute("SELECT count(DISTINCT site_id) FROM stock_latest").fetchone()[0]
            say(f"virtual warehouse: {n}/{sites} sites reported live stock")
            if n >= 0.95 * sites:
                break
            if time.monotonic() > deadline:
                raise click.ClickException(f"only {n} of {sites} sites reported within 120 s; see {out}/logs")
            time.sleep(3)
        before = dict(conn.execute(
            "SELECT material_id, sum(qty)::float8 FROM stock_latest WHERE material_id = ANY(%s) GROUP BY 1",
            ([m["id"] for m in base["materials"]],)).fetchall())

        say(console)
        # 2. declare
        res = stack.run("emergency", "declare", "--region", region, "--scenario", scenario, "--periods",
                        str(periods), "--period-length", period_length, "--demand-scale", str(demand_scale),
                        "--reason", "demo: epidemic outbreak, supplies to rescue centres", "--wait", "30")
        if res.returncode != 0:
            raise click.ClickException("the emergency was not accepted")
        emergency_id = res.stdout.strip().split("emergency ")[-1]

        # 3. periods run: live progress until the last period's orders are done
        end_at = time.monotonic() + periods * length_s + length_s  # a grace period to deliver
        while time.monotonic() < end_at:
            stack.check_alive()
            time.sleep(min(5.0, length_s / 2))
            rows = dict(conn.execute("SELECT status, count(*) FROM dispatch_orders WHERE emergency_id = %s"
                                     " GROUP BY status", (emergency_id,)).fetchall())
            planned = conn.execute("SELECT count(*) FROM plans WHERE emergency_id = %s AND published_at IS NOT NULL",
                                   (emergency_id,)).fetchone()[0]
            moving = sum(rows.get(s, 0) for s in ("open", "accepted", "in_transit"))
            say(f"period plans published {planned}/{periods}; orders: "
                + (", ".join(f"{k} {v}" for k, v in sorted(rows.items())) or "none yet"))
            if planned == periods and moving == 0 and time.monotonic() > end_at - length_s:
                break

        # 4. back to normal
        res = stack.run("emergency", "end", "--region", region, "--reason", "demo: outbreak contained", "--wait", "30")
        if res.returncode != 0:
            raise click.ClickException("the end event was not accepted")
        deadline = time.monotonic() + 30
        while conn.execute("SELECT closed_out_at FROM emergencies WHERE emergency_id = %s",
                           (emergency_id,)).fetchone()[0] is None:
            if time.monotonic() > deadline:
                raise click.ClickException("the dispatcher did not close out the emergency within 30 s")
            time.sleep(0.5)
        time.sleep(2 * interval + 1)  # the sites' last readings after the picks
        after = dict(conn.execute(
            "SELECT material_id, sum(qty)::float8 FROM stock_latest WHERE material_id = ANY(%s) GROUP BY 1",
            (list(before),)).fetchall())
        report = emergency_report(conn, emergency_id, base)
        report["virtual_warehouse"] = {m: {"unit": report["materials"][m]["unit"], "reported_before": before.get(m, 0.0),
                                           "reported_after": after.get(m, 0.0)} for m in before}
        report["registry"] = {"sites": sites, "centralized": n_central, "grid_cells": n_cells, "seed": seed,
                              "stock_sized_to_pack": sizing}
        report["wall_seconds"] = round(time.monotonic() - t0, 1)
        conn.close()
    finally:
        stack.echo = False
        stack.stop_all()
        if id_prefix is not None:  # throw-away site ids: their MQTT users go too
            try:
                from ingest.credentials import remove_site_credentials

                remove_site_credentials(settings, list(registry.sites))
            except Exception as exc:
                say(f"could not remove the demo sites' MQTT users: {exc}")
    print()
    print_report(report)
    say("virtual warehouse, reported stock before the emergency -> after (drift, picks and replenishment):")
    for m, r in report["virtual_warehouse"].items():
        say(f"  {m:<16} {r['reported_before']:>12,.0f} -> {r['reported_after']:>12,.0f} {r['unit']}")
    json_path, png_path = write_report(report, out)
    say(f"report written: {json_path} and {png_path}; logs in {out / 'logs'}")
    say(f"topics of this demo: {demo_settings.topic_prefix}* (deleted by the next demo run)")
