"""``vreserve demo``'s phases: services and a place of its own, a registry, the stages started as
subprocesses, the warehouse filling, the emergency declared, followed period by period and ended,
then the final report (JSON + PNG). Every subprocess is stopped at the end, also on Ctrl-C or an error.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from demo import carrier
from demo.limits import write_limited_scenario
from demo.registry import size_registry_to_pack
from demo.services import clear_earlier_demos, console_login, fresh_database
from demo.stack import Stack, api_addr, free_port, stack_env
from deploy import runner
from dispatcher.live import in_registry_units
from dispatcher.operator import parse_duration
from dispatcher.report import emergency_report, print_report, write_report
from optimizer import load_scenario
from vreserve.db import connect, migrate
from vreserve.kafka_admin import ensure_topics
from vreserve.registry import write_registry
from vreserve.registry_generate import generate_registry
from vreserve.settings import Settings
from vreserve.site_credentials import remove_site_credentials
from vreserve.tables import table

Say = Callable[[str], None]

#: The demo's own database; with another name (tests) earlier demos' topics are left alone.
DEFAULT_DATABASE = "vreserve_demo"


@dataclass(frozen=True)
class DemoOptions:
    """The command's options (see ``demo/cli.py`` for what each means)."""

    sites: int
    region: str
    scenario: str
    periods: int
    period_length: str
    demand_scale: float
    interval: float
    fail_rate: float
    seed: int
    stock_from_pack: bool
    out_dir: str
    quiet: bool
    database: str
    #: the limited-fleet variant (demo/limits.py): None keeps the pack's own limit
    max_deliveries: int | None = None
    min_lot: float | None = None


@dataclass
class DemoRegistry:
    """The generated registry, where it was written, and the figures the report repeats."""

    registry: Any
    path: Path
    credentials_path: Path
    sizing: dict | None
    n_central: int
    n_cells: int
    #: site id prefix of a throw-away registry (tests' runs), None for the default demo's
    id_prefix: str | None


def run_demo(settings: Settings, opts: DemoOptions) -> None:
    """The main job end to end; see the module docstring for the phases."""
    t0 = time.monotonic()
    out = Path(opts.out_dir).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    length_s = parse_duration(opts.period_length)
    run_id = uuid.uuid4().hex[:6]

    def say(msg: str) -> None:
        print(f"[demo {time.monotonic() - t0:6.1f} s] {msg}", flush=True)

    demo_settings = prepare_services(settings, opts, run_id, say)
    base = load_scenario(opts.scenario).to_dict()
    # the limited-fleet variant is declared from a file of its own (None: the pack by name)
    demand_file = write_limited_scenario(base, opts.max_deliveries, opts.min_lot, out, say)
    reg, base = build_registry(opts, base, out, run_id, say)
    stack = Stack(stack_env(demo_settings, opts.interval), out / "logs", t0, echo=not opts.quiet)
    report = None
    try:
        console = start_stages(stack, settings, demo_settings.pg_dsn, opts, reg, length_s, out, say)
        report = run_emergency(stack, demo_settings.pg_dsn, opts, base, length_s, out, console, say, demand_file)
        report["registry"] = {"sites": opts.sites, "centralized": reg.n_central, "grid_cells": reg.n_cells,
                              "seed": opts.seed, "stock_sized_to_pack": reg.sizing}
        report["wall_seconds"] = round(time.monotonic() - t0, 1)
    finally:
        stack.echo = False
        stack.stop_all()
        if reg.id_prefix is not None:  # throw-away site ids: their MQTT users go too
            try:
                remove_site_credentials(settings, list(reg.registry.sites))
            except Exception as exc:
                say(f"could not remove the demo sites' MQTT users: {exc}")
    print_final(report, out, demo_settings.topic_prefix, say)


def prepare_services(settings: Settings, opts: DemoOptions, run_id: str, say: Say) -> Settings:
    """Services up, a fresh database migrated, the demo's topics; returns the demo's settings."""
    say("starting the services (Kafka, Mosquitto, PostgreSQL)")
    runner.up(settings, progress=lambda m: say(f"services: {m}"))
    dsn = fresh_database(settings, opts.database)
    demo_settings = settings.with_(pg_dsn=dsn, topic_prefix=f"demo{run_id}.", reading_interval_s=opts.interval)
    dropped = sessions_ended = 0
    if opts.database == DEFAULT_DATABASE:  # the default demo cleans up after earlier ones (tests' runs do not)
        dropped, sessions_ended = clear_earlier_demos(settings, demo_settings.topic_prefix, say)
    variant = migrate(dsn, progress=lambda m: None).variant
    ensure_topics(demo_settings)
    say(f"database {opts.database} migrated ({variant.name} variant: {variant.reason}); topics under prefix "
        f"{demo_settings.topic_prefix!r} created"
        f"{f' ({dropped} topics of earlier demos deleted)' if dropped else ''}"
        f"{f'; {sessions_ended} MQTT sessions of earlier demo bridges ended' if sessions_ended else ''}")
    return demo_settings


def build_registry(opts: DemoOptions, base: dict, out: Path, run_id: str,
                   say: Say) -> tuple[DemoRegistry, dict]:
    """Generate the registry (sized to the pack unless ``--city-stock``) and write it to ``out``;
    returns it with the scenario in the registry's units."""
    # The default demo's sites are wuhan-00001...; any other run (tests, with --database) gets site ids
    # of its own: site ids are MQTT client ids and user names on the shared broker, and two fleets
    # with the same ids would take each other's connections over and overwrite each other's passwords.
    id_prefix = None if opts.database == DEFAULT_DATABASE else f"{opts.region}-{run_id}-"
    registry = generate_registry(opts.sites, seed=opts.seed, region=opts.region, id_prefix=id_prefix)
    # the pack's figures in the registry's units (e.g. 500 ml bottles of alcohol as litres), so the
    # sizing below and the report count what the sites count
    base, _unit_notes = in_registry_units(base, registry.material_units())
    sizing = None
    if opts.stock_from_pack:
        registry, sizing = size_registry_to_pack(registry, base, opts.region)
        say("registry stock sized to the pack's own supply (so the region is short like the source): "
            + "; ".join(f"{m} {f['before']:,.0f} -> {f['after']:,.0f} at {f['sites']} sites"
                        for m, f in sizing.items()))
    path = out / "registry.yaml"
    write_registry(registry, path)
    n_central = sum(1 for s in registry.sites.values() if s.tier == "centralized")
    n_cells = len({s.grid_cell for s in registry.sites.values()})
    say(f"registry: {opts.sites} sites ({n_central} centralized depots, {opts.sites - n_central} decentralized) "
        f"over {n_cells} grid cells of {opts.region}, written to {path}")
    return DemoRegistry(registry, path, out / "mqtt-credentials.yaml", sizing, n_central, n_cells, id_prefix), base


def start_stages(stack: Stack, settings: Settings, dsn: str, opts: DemoOptions, reg: DemoRegistry,
                 length_s: float, out: Path, say: Say) -> str:
    """Load the registry, start every stage; returns the line that says where the console is."""
    res = stack.run("registry", "load", str(reg.path), "--mqtt-credentials", str(reg.credentials_path))
    if res.returncode != 0:
        raise click.ClickException("registry load failed")
    stack.start("stream", "stream", "run", "--web-port", str(free_port()), "--aggregate-interval", "5")
    # a throw-away bridge: its persistent MQTT session is deleted when it stops, so the broker
    # does not keep queueing its share of all site traffic after the demo
    stack.start("bridge", "ingest", "run", "--status-interval", "10", "--end-session-on-stop")
    # the bridge says "started" only once its subscription is acknowledged (SUBACK): a reading
    # published before a new bridge's first subscription exists has no session to wait in and
    # would be dropped by the broker, so the fleet starts only then
    stack.wait_line("bridge", "bridge started", 60)
    stack.start("fleet", "simulate", "sites", "--registry", str(reg.path), "--credentials",
                str(reg.credentials_path), "--interval", str(opts.interval), "--progress-every", "10",
                "--end-sessions-on-stop")
    stack.start("dispatcher", "dispatch", "run", "--time-limit", str(max(5.0, length_s / 2)))
    addr = api_addr(settings)
    stack.start("api", "serve", "--addr", addr)
    say(f"HTTP API of this demo: http://{addr}/api/docs (create a login with `vreserve users add NAME "
        f"--role operator` and VR_PG_DSN pointing at database {opts.database}; docs/api.md)")
    console = console_login(dsn, out, addr, say)
    # the logistics company takes its orders on a webhook and reports through the API (demo/carrier.py)
    carrier.wait_for_api(stack, addr)
    carrier.start(stack, addr, carrier.provision(dsn, out, opts.region),
                  ["--accept", "1", "--pick", f"{min(3.0, length_s / 5):g}", "--deliver",
                   f"{min(8.0, length_s / 2.5):g}", "--fail-rate", str(opts.fail_rate)])
    say(f"carrier {carrier.CARRIER_ID}: orders by signed webhook, statuses through the API")
    return console


def run_emergency(stack: Stack, dsn: str, opts: DemoOptions, base: dict, length_s: float, out: Path,
                  console: str, say: Say, demand_file: Path | None = None) -> dict[str, Any]:
    """Warehouse filled -> declared -> periods followed -> ended; returns the emergency's report."""
    with connect(dsn, autocommit=True) as conn:
        wait_for_warehouse(conn, stack, opts.sites, out, say)
        before = reported_stock(conn, [m["id"] for m in base["materials"]])
        say(console)
        emergency_id = declare(stack, opts, demand_file)
        follow_periods(conn, stack, emergency_id, opts.periods, length_s, say)
        end_emergency(conn, stack, opts, emergency_id)
        time.sleep(2 * opts.interval + 1)  # the sites' last readings after the picks
        after = reported_stock(conn, list(before))
        report = emergency_report(conn, emergency_id, base)
    report["virtual_warehouse"] = {m: {"unit": report["materials"][m]["unit"], "reported_before": before.get(m, 0.0),
                                       "reported_after": after.get(m, 0.0)} for m in before}
    return report


def wait_for_warehouse(conn, stack: Stack, sites: int, out: Path, say: Say, timeout_s: float = 120) -> None:
    """Until 95 % of the sites reported live stock (the virtual warehouse fills from readings)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stack.check_alive()
        n = conn.execute("SELECT count(DISTINCT site_id) FROM stock_latest").fetchone()[0]
        say(f"virtual warehouse: {n}/{sites} sites reported live stock")
        if n >= 0.95 * sites:
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"only {n} of {sites} sites reported within {timeout_s:g} s; see {out}/logs")
        time.sleep(3)


def reported_stock(conn, materials: list[str]) -> dict[str, float]:
    """Units per material the sites report now (the live virtual warehouse)."""
    return dict(conn.execute(
        "SELECT material_id, sum(qty)::float8 FROM stock_latest WHERE material_id = ANY(%s) GROUP BY 1",
        (materials,)).fetchall())


def declare(stack: Stack, opts: DemoOptions, demand_file: Path | None = None) -> str:
    """Declare the emergency through the operator's command (the pack by name, or the limited
    variant's scenario file); returns its id."""
    source = ["--scenario", opts.scenario] if demand_file is None else ["--demand", str(demand_file)]
    res = stack.run("emergency", "declare", "--region", opts.region, *source, "--periods",
                    str(opts.periods), "--period-length", opts.period_length, "--demand-scale",
                    str(opts.demand_scale), "--reason", "demo: epidemic outbreak, supplies to rescue centres",
                    "--wait", "30")
    if res.returncode != 0:
        raise click.ClickException("the emergency was not accepted")
    return res.stdout.strip().split("emergency ")[-1]


def follow_periods(conn, stack: Stack, emergency_id: str, periods: int, length_s: float, say: Say) -> None:
    """Live progress until the last period's orders are done (or the horizon plus one period passed)."""
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
            return


def end_emergency(conn, stack: Stack, opts: DemoOptions, emergency_id: str, timeout_s: float = 30) -> None:
    """Back to normal: the end event, then wait until the dispatcher closed the emergency out."""
    res = stack.run("emergency", "end", "--region", opts.region, "--reason", "demo: outbreak contained", "--wait", "30")
    if res.returncode != 0:
        raise click.ClickException("the end event was not accepted")
    deadline = time.monotonic() + timeout_s
    while conn.execute("SELECT closed_out_at FROM emergencies WHERE emergency_id = %s",
                       (emergency_id,)).fetchone()[0] is None:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the dispatcher did not close out the emergency within {timeout_s:g} s")
        time.sleep(0.5)


def print_final(report: dict, out: Path, topic_prefix: str, say: Say) -> None:
    """The report on screen, the warehouse before -> after, and where the files are."""
    print()
    print_report(report)
    say("virtual warehouse, reported stock before the emergency -> after (drift, picks and replenishment):")
    rows = [[m, f"{r['reported_before']:,.0f}", f"{r['reported_after']:,.0f}", r["unit"]]
            for m, r in report["virtual_warehouse"].items()]
    for line in table(["material", "before", "after", "unit"], rows).splitlines():
        say(f"  {line}")
    json_path, png_path = write_report(report, out)
    say(f"report written: {json_path} and {png_path}; logs in {out / 'logs'}")
    say(f"topics of this demo: {topic_prefix}* (deleted by the next demo run)")
