"""``vreserve serve | users | carriers | tokens | audit-log``: the HTTP API and its identities.

Every state-changing command here is written to the same audit trail as the API's requests, with
the shell user (``os-user:<name>``) as the actor.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import click

from vreserve import db_access
from vreserve.settings import Settings
from vreserve.tables import table


def _connect(settings: Settings):
    from vreserve.db import connect

    try:
        return connect(settings.pg_dsn_for(db_access.API), autocommit=True)
    except Exception as exc:  # psycopg.OperationalError: say where we tried (the DSN holds no secret here)
        raise click.ClickException(f"cannot reach the database: {exc}") from None


#: Seconds a stopping server waits for open requests; the console's event streams never end by
#: themselves, so without a bound a SIGTERM would wait for every browser to close.
GRACEFUL_SHUTDOWN_S = 5


@click.command("serve")
@click.option("--addr", help="host:port (default: VR_HTTP_ADDR, 127.0.0.1:18080).")
@click.option("--workers", type=click.IntRange(1, 32), default=1, show_default=True, help="uvicorn worker processes.")
@click.option("--http", "http_impl", type=click.Choice(["auto", "httptools", "h11"]), default="auto", show_default=True,
              help="HTTP parser: auto takes httptools (C) when installed, h11 (pure Python) otherwise.")
@click.option("--loop", type=click.Choice(["auto", "uvloop", "asyncio"]), default="auto", show_default=True,
              help="Event loop: auto takes uvloop when installed, asyncio's own otherwise.")
@click.pass_obj
def serve(settings: Settings, addr: str | None, workers: int, http_impl: str, loop: str) -> None:
    """Run the HTTP API (OpenAPI at /openapi.json, docs at /api/docs, routes under /api/v1)."""
    import uvicorn

    if addr:
        settings = settings.with_(http_addr=addr)
    try:
        host, port = settings.http_host_port
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"vreserve API on http://{host}:{port}/api/docs", err=True)
    common = dict(host=host, port=port, log_level="warning", proxy_headers=False, http=http_impl, loop=loop,
                  timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    if workers > 1:
        import os

        os.environ["VR_HTTP_ADDR"] = settings.http_addr
        uvicorn.run("api.serve:app_from_env", factory=True, workers=workers, **common)
        return
    from api.app import create_app

    uvicorn.run(create_app(settings), **common)


# ----------------------------------------------------------------------------------- users
@click.group("users")
def users() -> None:
    """People who may log in to the API (argon2id password hashes)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "supervisor", "admin"]), required=True)
@click.pass_obj
def users_add(settings: Settings, name: str, role: str) -> None:
    """Add NAME with ROLE; the password is read from stdin (one line; never from argv)."""
    from vreserve import identity as ident
    from vreserve.operations import audited, cli_identity

    if sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    who = cli_identity()
    with _connect(settings) as conn:
        try:
            with audited(conn, who, "users.add", name, {"role": role}):
                ident.add_user(conn, name, role, password, who.actor)
        except ident.IdentityError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} added with role {role}")


@users.command("list")
@click.pass_obj
def users_list(settings: Settings) -> None:
    """Every account: role, disabled, failed logins in a row, locked until."""
    from vreserve import identity as ident

    with _connect(settings) as conn:
        rows = ident.list_users(conn)
    click.echo(table(("name", "role", "disabled", "failed logins", "locked until"),
                     [(r["name"], r["role"], str(r["disabled"]).lower(), f"{r['failed_logins']:,}",
                       r["locked_until"].isoformat() if r["locked_until"] else "-") for r in rows],
                     right=[False, False, False, True, False]))
    click.echo(f"{len(rows)} user(s)")


@users.command("disable")
@click.argument("name")
@click.pass_obj
def users_disable(settings: Settings, name: str) -> None:
    """Disable NAME: no more logins, and its bearer tokens stop working at once."""
    from vreserve import identity as ident
    from vreserve.operations import audited, cli_identity

    with _connect(settings) as conn:
        try:
            with audited(conn, cli_identity(), "users.disable", name):
                ident.set_disabled(conn, name, True)
        except ident.IdentityError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} disabled")


# --------------------------------------------------------------------------------- carriers
@click.group("carriers")
def carriers() -> None:
    """Logistics companies and the regions (routes) whose orders they carry."""


@carriers.command("add")
@click.argument("carrier_id")
@click.option("--name", required=True)
@click.option("--region", "regions", multiple=True, required=True, help="A region it serves (repeatable).")
@click.pass_obj
def carriers_add(settings: Settings, carrier_id: str, name: str, regions: tuple[str, ...]) -> None:
    """Add (or update) a carrier."""
    from vreserve import identity as ident
    from vreserve.operations import audited, cli_identity

    with _connect(settings) as conn:
        try:
            with audited(conn, cli_identity(), "carriers.add", carrier_id, {"regions": list(regions)}):
                ident.add_carrier(conn, carrier_id, name, list(regions))
        except Exception as exc:  # psycopg CheckViolation on the id
            raise click.ClickException(f"carrier {carrier_id!r} not added: {exc}") from None
    click.echo(f"carrier {carrier_id} serves {', '.join(regions)}")


# ----------------------------------------------------------------------------------- tokens
def _expiry(text: str) -> datetime:
    """'30d', '12h' from now, or an RFC 3339 time with a zone."""
    from vreserve.operations import parse_duration

    try:
        return datetime.now(timezone.utc) + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: want a duration (30d, 12h) or an RFC 3339 time") from None
    if at.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. 2027-01-01T00:00:00Z)")
    return at


@click.group("tokens")
def tokens() -> None:
    """API tokens for systems: a carrier (its orders) or an owner (its sites, contracts, settlement)."""


@tokens.command("issue")
@click.option("--carrier", "carrier_id", help="Carrier id.")
@click.option("--owner", "owner_id", help="Owner id (as in the registry).")
@click.option("--expires", required=True, help="Duration (30d, 12h) or RFC 3339 time.")
@click.pass_obj
def tokens_issue(settings: Settings, carrier_id: str | None, owner_id: str | None, expires: str) -> None:
    """Issue a token; the secret is printed once on stdout and stored only as a hash."""
    from vreserve import identity as ident
    from vreserve.operations import audited, cli_identity

    if bool(carrier_id) == bool(owner_id):
        raise click.UsageError("give exactly one of --carrier ID or --owner ID")
    kind, subject = ("carrier", carrier_id) if carrier_id else ("owner", owner_id)
    who = cli_identity()
    with _connect(settings) as conn:
        try:
            with audited(conn, who, "tokens.issue", f"{kind}:{subject}") as info:
                token_id, secret = ident.issue_token(conn, kind, subject, _expiry(expires), who.actor)
                info["token_id"] = token_id
        except ident.IdentityError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"token {token_id} for {kind} {subject} (shown once; keep it secret):", err=True)
    click.echo(secret)


@tokens.command("list")
@click.pass_obj
def tokens_list(settings: Settings) -> None:
    """Every token (never its secret)."""
    from vreserve import identity as ident

    with _connect(settings) as conn:
        rows = ident.list_tokens(conn)
    now = datetime.now(timezone.utc)
    click.echo(table(("token", "kind", "subject", "expires (UTC)", "state"),
                     [(r["token_id"], r["kind"], r["subject"], f"{r['expires_at']:%Y-%m-%d %H:%M}",
                       "revoked" if r["revoked_at"] else "expired" if r["expires_at"] < now else "active")
                      for r in rows], right=[False] * 5))
    click.echo(f"{len(rows)} token(s)")


@tokens.command("revoke")
@click.argument("token_id")
@click.pass_obj
def tokens_revoke(settings: Settings, token_id: str) -> None:
    """Revoke TOKEN_ID: it stops working at once."""
    from vreserve import identity as ident
    from vreserve.operations import audited, cli_identity

    with _connect(settings) as conn:
        try:
            with audited(conn, cli_identity(), "tokens.revoke", token_id):
                ident.revoke_token(conn, token_id)
        except ident.IdentityError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"token {token_id} revoked")


# -------------------------------------------------------------------------------- audit log
@click.group("audit-log")
def audit_log() -> None:
    """The tamper-evident audit trail of every state-changing request and command."""


@audit_log.command("verify")
@click.pass_obj
def audit_log_verify(settings: Settings) -> None:
    """Walk the hash chain; exit 1 and name the first row that was edited, removed or inserted."""
    from vreserve import auditlog

    with _connect(settings) as conn:
        r = auditlog.verify(conn)
    if r.ok:
        click.echo(f"audit trail intact: {r.rows} record(s), hash chain verified")
        return
    click.echo(f"AUDIT TRAIL BROKEN at record {r.first_bad_seq}: {r.problem} ({r.rows} record(s) before it verified)",
               err=True)
    sys.exit(1)


@audit_log.command("show")
@click.option("--limit", type=click.IntRange(1, 10000), default=30, show_default=True)
@click.option("--actor")
@click.pass_obj
def audit_log_show(settings: Settings, limit: int, actor: str | None) -> None:
    """The newest records."""
    from vreserve import auditlog

    with _connect(settings) as conn:
        rows = auditlog.recent(conn, limit, 0, actor)
    click.echo(table(("seq", "at", "actor", "source", "outcome", "status", "action", "target"),
                     [(f"{r['seq']:,}", f"{r['at']:%Y-%m-%d %H:%M:%S}", r["actor"], r["source"], r["outcome"],
                       r["status"], r["action"], r["target"]) for r in reversed(rows)],
                     right=[True] + [False] * 7))


# --------------------------------------------------------------------------------- webhooks
@click.group("carrier-webhooks")
def webhooks() -> None:
    """Carriers without Kafka: dispatch records POSTed, signed, to each carrier's webhook.

    (`vreserve webhooks` is supervision's: critical alerts to registered webhooks.)"""


@webhooks.command("run")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Failed attempts before a carrier's queue is held.")
@click.option("--backoff", type=float, default=0.5, show_default=True, help="First retry delay, s (doubles).")
@click.pass_obj
def webhooks_run(settings: Settings, max_attempts: int, backoff: float) -> None:
    """The delivery service (one per deployment); stops cleanly on SIGTERM / Ctrl-C."""
    import signal

    from api import webhooks as wh

    stopping = {"now": False}

    def _stop(*_a) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"webhooks: consuming {settings.topic('dispatch-orders')} and delivering to the registered carriers",
               err=True)
    counters = wh.run(settings, wh.DeliveryPolicy(max_attempts=max_attempts, base_backoff_s=backoff),
                      stop=lambda: stopping["now"], progress=lambda m: click.echo(m, err=True))
    click.echo(f"webhooks stopped: {counters.enqueued} queued, {counters.delivered} delivered, "
               f"{counters.failures} failed attempts, {counters.held} held", err=True)


@webhooks.command("register")
@click.argument("carrier_id")
@click.argument("url")
@click.pass_obj
def webhooks_register(settings: Settings, carrier_id: str, url: str) -> None:
    """Set CARRIER_ID's webhook URL; prints the new signing secret once (stdout)."""
    from api import webhooks as wh
    from vreserve.operations import audited, cli_identity

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("the URL must start with http:// or https://")
    with _connect(settings) as conn:
        try:
            with audited(conn, cli_identity(), "webhooks.register", carrier_id, {"url": url}):
                secret = wh.register(conn, carrier_id, url, cli_identity().actor)
        except Exception as exc:  # unknown carrier: foreign key
            raise click.ClickException(f"webhook not registered: {str(exc).splitlines()[0]}") from None
    click.echo(f"webhook of {carrier_id}: {url}; signing secret (shown once):", err=True)
    click.echo(secret)


@webhooks.command("held")
@click.pass_obj
def webhooks_held(settings: Settings) -> None:
    """Carriers whose deliveries are held after repeated failures, with the reason."""
    from api import webhooks as wh

    with _connect(settings) as conn:
        rows = wh.held(conn)
    for r in rows:
        click.echo(f"{r['carrier_id']:<20} held since {r['held_at']:%Y-%m-%d %H:%M:%S} UTC, {r['waiting']} record(s) "
                   f"waiting (first {r['first_waiting_order']}): {r['held_reason']}")
    click.echo(f"{len(rows)} carrier(s) held")


@webhooks.command("release")
@click.argument("carrier_id")
@click.pass_obj
def webhooks_release(settings: Settings, carrier_id: str) -> None:
    """Resume a held carrier's deliveries, in order, from the record that failed."""
    from api import webhooks as wh
    from vreserve.operations import audited, cli_identity

    with _connect(settings) as conn:
        try:
            with audited(conn, cli_identity(), "webhooks.release", carrier_id):
                n = wh.release(conn, carrier_id)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{carrier_id}: {n} record(s) due again")


commands = [serve, users, carriers, tokens, audit_log, webhooks]
