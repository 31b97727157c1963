"""``vreserve services``, ``vreserve topics`` and ``vreserve db``: the plumbing commands.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from deploy import kafka_security
from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN
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
    from vreserve.db_access import AccessError

    info = conninfo_to_dict(settings.pg_dsn)
    where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    try:
        _ensure_roles(settings)
        applied = migrate(settings.pg_dsn, progress=lambda m: click.echo(f"  {m}", err=True), variant=variant)
    except (MigrationError, AccessError) as exc:
        raise click.ClickException(f"database {where}: {exc}") from None
    click.echo(f"database {where}: {applied.variant.name} variant ({applied.variant.reason})")
    click.echo(f"{len(applied)} migration(s) applied" if applied else "schema up to date")
    if applied.uncovered:
        raise click.ClickException(str(applied.uncovered))


def _ensure_roles(settings: Settings) -> None:
    """As the bootstrap superuser: the owner and component roles, with their generated passwords."""
    from vreserve import db_access
    from vreserve.db import connect

    if settings.pg_roles == "single":
        return
    with connect(settings.pg_dsn, autocommit=True) as conn:
        if conn.execute("SELECT current_setting('is_superuser')").fetchone()[0] == "on":
            for role in db_access.ensure_roles(conn, settings.secrets_folder):
                click.echo(f"  role {role} created (password in {settings.secrets_folder}, 0600)", err=True)


@db.command("roles")
@click.pass_obj
def db_roles(settings: Settings) -> None:
    """List the database roles (superuser or not) and each one's grants in this database
    (S select, I insert, U update, D delete, T truncate, R references, G trigger)."""
    from vreserve import db_access
    from vreserve.db import connect

    with connect(settings.pg_dsn, autocommit=True) as conn:
        for role, attrs, grants in db_access.describe(conn):
            click.echo(f"{role:<16} {attrs}")
            click.echo(f"    {grants}")


@click.command("kafka", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("tool", type=click.Choice(["console-producer", "console-consumer"]))
@click.argument("topic")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--principal", default=ADMIN, show_default=True,
              help="Kafka principal to log in as (its secret from the state folder).")
@click.pass_obj
def kafka_tool(settings: Settings, tool: str, topic: str, args: tuple[str, ...], principal: str) -> None:
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
    security: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if kafka_clients.secured(settings):  # the login goes in a 0600 file, never on the command line
            config = Path(tmp) / "client.properties"
            try:
                kafka_security.write_private(config, kafka_security.client_properties(
                    kafka_clients.login(settings, principal), kafka_clients.ca_file(settings)))
            except kafka_clients.KafkaLoginError as exc:
                raise click.ClickException(str(exc)) from None
            option = "--producer.config" if tool == "console-producer" else "--consumer.config"
            security = [option, str(config)]
        argv = kafka.tool_argv(runner.KAFKA_TOOLS[tool], ["--bootstrap-server", settings.kafka_bootstrap,
                                                          "--topic", settings.topic(topic), *security, *args], libs)
        raise SystemExit(subprocess.call(argv))


@db.command("rotate-password")
@click.option("--role", default=None, help="The role (default: VR_PG_DSN's user), e.g. vr_stream or vr_api.")
@click.pass_obj
def db_rotate_password(settings: Settings, role: str | None) -> None:
    """Replace a database role's generated password without downtime: the server gets the new
    SCRAM verifier, then the secret and the 0600 libpq password file are replaced. Open
    connections stay up; every new connection (pools included) reads the password file, so no
    component needs a restart. Runs as VR_PG_DSN's user (the bootstrap superuser for other roles)."""
    from psycopg.conninfo import conninfo_to_dict

    from deploy import pg_security, runner
    from vreserve import db_access
    from vreserve.db import connect
    from vreserve.secret_store import new_secret, write_secret
    from vreserve.settings import PG_PASSFILE, role_passfile

    info = conninfo_to_dict(settings.pg_dsn)
    own = info.get("user") or "vreserve"
    role = role or own
    if role != own and role not in db_access.ALL_ROLES:
        raise click.ClickException(f"unknown role {role!r}; one of {', '.join((own, *db_access.ALL_ROLES))}")
    if role == own and "password" in info:
        raise click.ClickException("VR_PG_DSN carries its own password: rotate it where you keep it")
    password = new_secret()
    with db_access.roles_lock(settings.secrets_folder), connect(settings.pg_dsn, autocommit=True) as conn:
        db_access.set_password(conn, role, password)  # server, secret and password file under one lock
        write_secret(settings.secrets_folder / f"{pg_security.secret_name(role)}.secret", password)
        pg_security.write_passfile(settings.secrets_folder / (PG_PASSFILE if role == own else role_passfile(role)),
                                   role, password)
    stamp = runner.Postgres(settings).data / "vreserve-password.stamp"
    if role == own and stamp.parent.is_dir():  # the local runner's cluster: it need not set the password again
        stamp.write_text(pg_security.fingerprint(password))
    click.echo(f"password of role {role} rotated; secret and password file in {settings.secrets_folder} (0600)")


@click.command("kafka-principal")
@click.argument("name")
@click.option("--carrier", is_flag=True, help="NAME is a carrier id: provision its principal vr-carrier-NAME.")
@click.option("--rotate", is_flag=True, help="Replace the secret; running components read it at their next login (no restart).")
@click.pass_obj
def kafka_principal(settings: Settings, name: str, carrier: bool, rotate: bool) -> None:
    """Provision a component's or a carrier's Kafka principal: a generated secret (0600, state
    folder; never printed), its SCRAM-SHA-512 credential and its ACLs under the topic prefix.
    With --rotate the secret is replaced: connections already logged in stay up and every new
    login of a running component reads the new secret from its file, so nothing restarts; the
    old secret is refused for new logins at once (hand a carrier outside this host its new secret
    before its next login)."""
    from vreserve.kafka_access import AccessError, carrier_principal, rule_for
    from vreserve.kafka_admin import ensure_acls, provision_principal

    try:
        principal = carrier_principal(name) if carrier else name
        rule_for(principal)
    except AccessError as exc:
        raise click.ClickException(str(exc)) from None
    path = provision_principal(settings, principal, rotate=rotate)
    count = ensure_acls(settings, [principal])
    click.echo(f"{principal}: secret {'rotated' if rotate else 'in place'} in {path} (0600); "
               f"{count} ACL bindings under prefix {settings.topic_prefix!r}")


@click.command("secrets-scan")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.pass_obj
def secrets_scan(settings: Settings, folders: tuple[Path, ...]) -> None:
    """Search every *.log under the state folder and FOLDERS (e.g. a demo's out/logs) for the
    installation's generated secrets; names the log and the secret's file, never its value.
    Exit status 1 on a find."""
    from vreserve.secret_scan import known_secrets, log_files, scan

    secrets = known_secrets(settings.secrets_folder) if settings.secrets_folder.is_dir() else {}
    logs = log_files([settings.state_dir, *folders])
    leaks = scan(secrets, logs)
    for leak in leaks:
        click.echo(f"SECRET IN LOG: {leak.secret} found in {leak.log}")
    click.echo(f"{len(secrets)} secret(s) searched for in {len(logs):,} log file(s): {len(leaks)} found")
    if leaks:
        raise SystemExit(1)


commands = [services, topics, db, kafka_tool, kafka_principal, secrets_scan]
