"""``vreserve services``, ``vreserve topics`` and ``vreserve db``: the plumbing commands."""
from __future__ import annotations

import time

import click

from vreserve.settings import Settings


@click.group()
def services() -> None:
    """Start, stop and inspect the local Kafka, Mosquitto and PostgreSQL."""


@services.command("up")
@click.pass_obj
def services_up(settings: Settings) -> None:
    """Start every service that is not running and wait until all are healthy (idempotent)."""
    from deploy import runner

    t0 = time.monotonic()
    try:
        results = runner.up(settings, progress=lambda m: click.echo(f"  {m}", err=True))
    except runner.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    for name, (st, started_in) in results.items():
        how = f"started in {started_in:.1f} s" if started_in is not None else "already running"
        click.echo(f"{name:<10} healthy  {st.address:<28} {how:<22} {st.detail}")
    click.echo(f"all services healthy ({time.monotonic() - t0:.1f} s)")


@services.command("down")
@click.pass_obj
def services_down(settings: Settings) -> None:
    """Stop the services the runner started; leaves no processes behind."""
    from deploy import runner

    stopped = runner.down(settings, progress=lambda m: click.echo(f"  {m}", err=True))
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@services.command("status")
@click.pass_obj
def services_status(settings: Settings) -> None:
    """Show each service's state; exit status 1 unless all are healthy."""
    from deploy import runner

    rows = runner.status(settings)
    for st in rows:
        state = "healthy" if st.healthy else ("UNHEALTHY" if st.running else "stopped")
        pid = f"pid {st.pid}" if st.pid else ""
        click.echo(f"{st.name:<10} {state:<9} {st.address:<28} {pid:<10} {st.detail}   log: {st.log}")
    if not all(st.healthy for st in rows):
        raise SystemExit(1)


@services.command("logs")
@click.argument("service", type=click.Choice(["kafka", "mosquitto", "postgres"]))
@click.option("-n", "--lines", default=40, show_default=True, help="How many last lines.")
@click.pass_obj
def services_logs(settings: Settings, service: str, lines: int) -> None:
    """Print the last lines of a service's log."""
    log = settings.state_dir / service / f"{service}.log"
    if not log.exists():
        raise click.ClickException(f"no log at {log}")
    click.echo("\n".join(log.read_text(errors="replace").splitlines()[-lines:]))


@click.command("topics")
@click.pass_obj
def topics(settings: Settings) -> None:
    """Create the project's Kafka topics (idempotent) and list them."""
    from vreserve import topics as names
    from vreserve.kafka_admin import ensure_topics

    created = ensure_topics(settings)
    for name in names.ALL:
        full = settings.topic(name)
        click.echo(f"{full:<40} {'created' if full in created else 'exists'} ({settings.partitions} partitions)")


@click.group("db")
def db() -> None:
    """Database schema commands."""


@db.command("migrate")
@click.option("--variant", type=click.Choice(["timescale", "plain"]), default=None,
              help="Force a variant for a new database (default: TimescaleDB when the server can load it).")
@click.pass_obj
def db_migrate(settings: Settings, variant: str | None) -> None:
    """Apply pending SQL migrations (idempotent); the TimescaleDB variant when the server can load it."""
    from psycopg.conninfo import conninfo_to_dict

    from vreserve.db import MigrationError, migrate

    info = conninfo_to_dict(settings.pg_dsn)
    where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    try:
        applied = migrate(settings.pg_dsn, progress=lambda m: click.echo(f"  {m}", err=True), variant=variant)
    except MigrationError as exc:
        raise click.ClickException(f"database {where}: {exc}") from None
    click.echo(f"database {where}: {applied.variant.name} variant ({applied.variant.reason})")
    click.echo(f"{len(applied)} migration(s) applied" if applied else "schema up to date")


@click.command("kafka", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("tool", type=click.Choice(["console-producer", "console-consumer"]))
@click.argument("topic")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def kafka_tool(settings: Settings, tool: str, topic: str, args: tuple[str, ...]) -> None:
    """Run Kafka's own console producer / consumer on a project topic (what a carrier or an
    operator reaches for first). TOPIC is the logical name (``order-status``); the configured
    prefix and bootstrap servers are added; ARGS go to the tool as they are, e.g.

    \b
      vreserve kafka console-consumer dispatch-orders --from-beginning --property print.key=true
      vreserve kafka console-producer order-status --property parse.key=true --property key.separator='|'

    The jars come with the broker's (deploy/pom.xml, fetched by Maven on first use).
    """
    import subprocess

    from deploy import runner

    kafka = runner.Kafka(settings)
    try:
        libs = kafka.tool_libs(progress=lambda m: click.echo(f"  {m}", err=True))
    except runner.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    argv = kafka.tool_argv(runner.KAFKA_TOOLS[tool], ["--bootstrap-server", settings.kafka_bootstrap,
                                                      "--topic", settings.topic(topic), *args], libs)
    raise SystemExit(subprocess.call(argv))


commands = [services, topics, db, kafka_tool]
