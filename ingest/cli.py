"""``vreserve ingest run`` (the MQTT -> Kafka bridge) and ``vreserve registry generate|load``.

Imports inside the command functions are lazy on purpose: every stage's CLI module is imported by
``vreserve --help``, which stays fast only if the stage's libraries load when a command runs.
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import click

from vreserve import db_access
from vreserve.settings import Settings


#: How many of its sites a refused / failed record names (a registry may provision thousands; the
#: record always has the count).
_SITES_NAMED = 100


def _audit_connection(settings: Settings):
    """A connection to the audit trail as the operator CLI's role (vr_api), checked for the right to
    append, or a refusal that says nothing was changed in the broker."""
    from vreserve.db import connect

    try:
        conn = connect(settings.pg_dsn_for(db_access.API), autocommit=True)
    except Exception as exc:  # psycopg.OperationalError: say where we tried (the DSN holds no secret)
        raise click.ClickException(f"the audit trail cannot be reached, so nothing was changed in the broker: "
                                   f"{exc}") from None
    if not conn.execute("SELECT has_table_privilege('audit_log', 'INSERT')").fetchone()[0]:
        conn.close()
        raise click.ClickException("this database login may not append to the audit trail (audit_log), so "
                                   "nothing was changed in the broker")
    return conn


@contextmanager
def _audited_broker_change(settings: Settings, action: str, targets: Sequence[str],
                           detail: dict | None = None) -> Iterator[dict]:
    """Run a change to the broker's logins or sessions (dynamic security, the MQTT admin account)
    and put it in our audit trail, actor the shell user (``os-user:<name>``, as every CLI command).

    Order, so that no such command succeeds without its record: (1) the audit trail is reached
    first, and an unreachable database refuses the command before the broker is touched; (2) the
    broker change, and the 0600 file with any new password (written before the record: a password
    set in the broker and not kept would lock the site out); (3) the record: one per site or
    login on success (target = its id), one ``refused`` / ``error`` record naming the targets when
    not. If (3) fails after (2), the command says that the change was made but is not recorded,
    and exits 1. The record never holds a password: the body adds only counts and names to the
    yielded dict."""
    from psycopg import Error as DbError

    from vreserve import auditlog
    from vreserve.mqtt import BrokerError
    from vreserve.operations import cli_identity

    actor, info = cli_identity().actor, dict(detail or {})
    with _audit_connection(settings) as conn:
        try:
            yield info
        except (click.ClickException, BrokerError, ValueError, ConnectionError, TimeoutError) as exc:
            message = exc.message if isinstance(exc, click.ClickException) else str(exc)
            if isinstance(exc, (ConnectionError, TimeoutError)):
                message = f"the broker cannot be reached: {type(exc).__name__}: {exc}"
            outcome = "refused" if isinstance(exc, (ValueError, click.ClickException)) else "error"
            _append_failure(conn, actor, action, targets, info, outcome, message)
            raise click.ClickException(message) from None
        except BaseException as exc:
            _append_failure(conn, actor, action, targets, info, "error", type(exc).__name__)
            raise
        try:
            auditlog.append_many(conn, [auditlog.Entry(actor, "cli", action, "ok", 200, t, info) for t in targets])
        except DbError as exc:
            raise click.ClickException(f"{action}: the change WAS made in the broker but is NOT in the audit "
                                       f"trail ({type(exc).__name__}: {exc})") from None


def _append_failure(conn, actor: str, action: str, targets: Sequence[str], info: dict, outcome: str,
                    reason: str) -> None:
    """One record for a command that did not (wholly) happen; a failure to write it is said, not raised
    over the command's own error."""
    from vreserve import auditlog

    target = targets[0] if len(targets) == 1 else f"{len(targets)} sites"
    detail = {**info, "reason": reason, "targets": len(targets), "named": list(targets[:_SITES_NAMED])}
    try:
        auditlog.append(conn, actor, "cli", action, outcome, 422 if outcome == "refused" else 502, target, detail)
    except Exception as exc:  # noqa: BLE001 - the command's own failure is what the operator must see first
        click.echo(f"{action}: its {outcome} record could not be written to the audit trail: {exc}", err=True)


@click.group()
def ingest() -> None:
    """The MQTT -> Kafka bridge for site stock readings."""


@ingest.command("run")
@click.option("--client-id", default=None, help="MQTT client id; keep it stable across restarts (persistent session). Default: <prefix>bridge-1.")
@click.option("--status-interval", default=5.0, show_default=True, type=float, help="Seconds between status lines.")
@click.option("--status-json", is_flag=True, help="Print status lines as JSON objects (for tools and the benchmark).")
@click.option("--registry-refresh", default=30.0, show_default=True, type=float, help="Seconds between reloads of known sites/materials from the database.")
@click.option("--linger-ms", default=5, show_default=True, type=int, help="Kafka producer linger (batching) in ms.")
@click.option("--batch-kib", default=1024, show_default=True, type=int, help="Kafka producer batch size per partition, KiB.")
@click.option("--duration", default=None, type=float, help="Stop after this many seconds (default: run until Ctrl-C / SIGTERM).")
@click.option("--end-session-on-stop", is_flag=True,
              help="On a clean stop, delete the persistent MQTT session (throw-away runs: demos, tests). "
                   "Without it the broker keeps queueing this bridge's share until it comes back.")
@click.option("--health-port", default=16067, show_default=True, type=int,
              help="Health endpoint http://127.0.0.1:PORT/health (200 ok / 503 with what is failing); 0: none.")
@click.pass_obj
def run(settings: Settings, client_id: str | None, status_interval: float, status_json: bool,
        registry_refresh: float, linger_ms: int, batch_kib: int, duration: float | None, end_session_on_stop: bool,
        health_port: int) -> None:
    """Move valid site readings from MQTT into Kafka; dead-letter everything else with a reason."""
    from ingest.bridge import Bridge, BridgeConfig

    config = BridgeConfig(
        client_id=client_id or f"{settings.topic_prefix}bridge-1",
        status_interval_s=status_interval,
        registry_refresh_s=registry_refresh,
        linger_ms=linger_ms,
        batch_size=batch_kib * 1024,
        health_port=health_port or None,
    )
    bridge = Bridge(settings, config)

    def emit(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    try:
        bridge.run(duration_s=duration, on_status=emit, status_json=status_json, end_mqtt_session=end_session_on_stop)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a real failure: say what and exit non-zero (unacked messages are redelivered)
        click.echo(f"bridge stopped on error: {exc!r}", err=True)
        raise SystemExit(1)


@ingest.command("end-session")
@click.option("--client-id", required=True, help="The MQTT client id of the bridge instance to decommission.")
@click.pass_obj
def end_session_cmd(settings: Settings, client_id: str) -> None:
    """Delete a decommissioned bridge's persistent MQTT session (else its share of messages queues up)."""
    from vreserve.mqtt import end_session

    with _audited_broker_change(settings, "bridge-sessions.end", [client_id]):
        end_session(settings.mqtt, client_id)
    click.echo(f"ended the MQTT session of {client_id}")


@ingest.command("dead-letters")
@click.option("--site", "site_id", required=True, help="The site whose refused reports to show.")
@click.option("--since", default=None, help="Only refusals newer than this, e.g. 30m, 6h, 2d (default: all kept).")
@click.option("--limit", default=100, show_default=True, type=int, help="At most this many (the newest).")
@click.pass_obj
def dead_letters(settings: Settings, site_id: str, since: str | None, limit: int) -> None:
    """Why a site's stock reports were refused: its dead letters with time, kind and reason
    (what a site's owner asks the operator for)."""
    from datetime import timedelta

    from vreserve.dead_letters import DeadLettersUnread, site_refusals

    span = None
    if since:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if since[-1:] not in units or not since[:-1].isdigit():
            raise click.BadParameter("use a number and s/m/h/d, e.g. 30m", param_hint="--since")
        span = timedelta(seconds=int(since[:-1]) * units[since[-1]])
    try:
        refusals = site_refusals(settings, site_id, span, limit)
    except DeadLettersUnread as exc:
        raise click.ClickException(str(exc)) from None
    for r in refusals:
        click.echo(r.line())
    click.echo(f"{len(refusals)} refused report(s) of site {site_id}" + (f" in the last {since}" if since else ""))


@click.group()
def registry() -> None:
    """The site registry: generate a realistic one, load one into the database."""


@registry.command("generate")
@click.option("--sites", "n_sites", required=True, type=int, help="Number of sites.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--region", default="wuhan", show_default=True)
@click.option("--id-prefix", default=None, help="Site id prefix (default '<region>-').")
@click.option("--materials-per-site", default=None, type=int, help="Every site holds the first N catalogue materials (benchmarks); default: a realistic mix per owner kind.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="YAML file to write.")
def generate(n_sites: int, seed: int, region: str, id_prefix: str | None, materials_per_site: int | None, out: str) -> None:
    """Generate a registry of N sites over a city-sized grid and write it as YAML."""
    from vreserve.registry import write_registry
    from vreserve.registry_generate import generate_registry

    t0 = time.monotonic()
    reg = generate_registry(n_sites, seed=seed, region=region, id_prefix=id_prefix, materials_per_site=materials_per_site)
    write_registry(reg, out)
    pairs = sum(len(s.materials) for s in reg.sites.values())
    click.echo(
        f"wrote {out}: {len(reg.sites)} sites ({len(reg.centralized())} centralized), {len(reg.materials)} materials, "
        f"{pairs} contracted (site, material) pairs in {time.monotonic() - t0:.1f} s"
    )


@registry.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--mqtt-credentials", "credentials_out", default=None, type=click.Path(dir_okay=False),
              help="Also create per-site MQTT passwords in the local Mosquitto and write them to this YAML file.")
@click.pass_obj
def load(settings: Settings, path: str, credentials_out: str | None) -> None:
    """Validate a registry file and upsert it into the database (materials, sites, contracts)."""
    from vreserve.registry import RegistryError, load_registry
    from vreserve.registry_store import store_registry
    from vreserve.db import connect
    from vreserve.operations import Refused, audited, cli_identity

    t0 = time.monotonic()
    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn, \
                audited(conn, cli_identity(), "registry.load", Path(path).name) as info:
            try:
                reg = load_registry(path)
            except RegistryError as exc:
                raise Refused("bad_registry", str(exc), 422) from None
            click.echo(f"read {path}: {len(reg.sites)} sites, {len(reg.materials)} materials "
                       f"({time.monotonic() - t0:.1f} s)")
            counts = store_registry(conn, reg)
            info.update(sites=len(reg.sites), materials=len(reg.materials))
    except Refused as exc:
        raise click.ClickException(exc.message) from None
    click.echo("stored: " + ", ".join(f"{n} {k} rows" for k, n in counts.items()) + f" ({time.monotonic() - t0:.1f} s)")
    if credentials_out:
        from vreserve.site_credentials import provision_site_credentials, write_credentials

        with _audited_broker_change(settings, "site-logins.set", list(reg.sites), {"via": "registry.load"}):
            creds = provision_site_credentials(settings, list(reg.sites), progress=click.echo)
            write_credentials(creds, credentials_out)
        click.echo(f"wrote {len(creds)} site credentials to {credentials_out}")


@ingest.command("site-secret")
@click.argument("site_ids", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="YAML file (0600) that receives the new passwords; they are never printed or put on a command line.")
def site_secret(site_ids: tuple[str, ...], out: str) -> None:
    """Create a site's MQTT login, or rotate its password (the plugin disconnects it; it logs in again with the new one)."""
    from vreserve.site_credentials import provision_site_credentials, write_credentials

    settings = click.get_current_context().obj
    with _audited_broker_change(settings, "site-logins.set", list(dict.fromkeys(site_ids))):
        creds = provision_site_credentials(settings, site_ids, progress=click.echo)
        write_credentials(creds, out)
    click.echo(f"{len(creds)} site password(s) set in the broker and written to {out}")


@ingest.command("site-rotate")
@click.argument("site_id")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="YAML file (0600) that receives the new login and password (never printed).")
@click.pass_obj
def site_rotate(settings: Settings, site_id: str, out: str) -> None:
    """Rotate a site's password without cutting it off: a second login (SITE or SITE/2) with a new
    password and the same rights; the current login stays until `site-retire-login` ends it."""
    from vreserve.site_credentials import begin_site_rotation, write_login

    with _audited_broker_change(settings, "site-logins.rotate", [site_id]) as info:
        login, password = begin_site_rotation(settings, site_id)
        write_login(site_id, login, password, out)
        info["new_login"] = login
    click.echo(f"site {site_id}: new login {login} written to {out}; the old login works until "
               f"`vreserve ingest site-retire-login OLD_LOGIN`")


@ingest.command("site-retire-login")
@click.argument("login")
@click.pass_obj
def site_retire_login(settings: Settings, login: str) -> None:
    """End a rotation's overlap: delete one of a site's two logins (its connection ends)."""
    from vreserve.mqtt_access import site_of_login
    from vreserve.site_credentials import retire_site_login

    with _audited_broker_change(settings, "site-logins.retire", [site_of_login(login)], {"login": login}):
        retire_site_login(settings, login)
    click.echo(f"login {login} deleted")


@ingest.command("site-remove")
@click.argument("site_ids", nargs=-1, required=True)
@click.pass_obj
def site_remove(settings: Settings, site_ids: tuple[str, ...]) -> None:
    """Delete sites' MQTT logins and roles (disconnects them at once)."""
    from vreserve.site_credentials import remove_site_credentials

    with _audited_broker_change(settings, "site-logins.remove", list(dict.fromkeys(site_ids))):
        remove_site_credentials(settings, site_ids)
    click.echo(f"{len(site_ids)} site login(s) removed")


commands = [ingest, registry]
