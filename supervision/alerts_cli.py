"""``vreserve alerts list | show | ack | resolve``: the alert lifecycle from a terminal; and the two
things an operator or owner feeds it: ``vreserve movements declare | list`` (declared consumption
and replenishment, which explain stock changes) and ``vreserve safety set | list | remove``.

The logic is in :mod:`vreserve.alerts`, :mod:`vreserve.reconcile` and :mod:`vreserve.safety` (the
HTTP API calls the same functions). The actor here is the
operating-system user, marked ``os-user:<name>``: a terminal session is not an authenticated
identity, and the mark says so in every record it leaves.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

import click

from vreserve import db_access
from vreserve.settings import Settings
from vreserve.tables import quantity, table


def _connect(settings: Settings):
    from vreserve.db import connect

    try:
        return connect(settings.pg_dsn_for(db_access.SUPERVISION), autocommit=True)
    except Exception as exc:  # psycopg.OperationalError: say where we tried (no password: host/db only)
        raise click.ClickException(f"cannot reach the database: {exc}") from None


@contextmanager
def _audited(conn, action: str, target: str, detail: dict | None = None) -> Iterator[dict]:
    """This command's record in the audit trail, as the API writes one per request (the actor is the
    shell user, ``os-user:<name>``); a refusal is recorded as refused with its reason."""
    from vreserve import operations as ops

    try:
        with ops.audited(conn, ops.cli_identity(), action, target, detail) as info:
            try:
                yield info
            except click.ClickException as exc:
                raise ops.Refused("refused", exc.message, 422) from None
    except ops.Refused as exc:
        raise click.ClickException(exc.message) from None


def _since(ctx, param, value):
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time (e.g. 2026-11-30T08:00:00Z)") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@click.group("alerts")
def alerts() -> None:
    """List alerts, acknowledge them, resolve them (actor: your OS user, marked os-user:NAME)."""


@alerts.command("list")
@click.option("--state", type=click.Choice(["open", "unacknowledged", "acknowledged", "resolved", "all"]),
              default="open", show_default=True)
@click.option("--kind", help="e.g. stale, low_stock, unexplained_change, pick_not_reflected, audit_discrepancy")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]))
@click.option("--site", "site_id")
@click.option("--cell", "grid_cell")
@click.option("--material", "material_id")
@click.option("--since", callback=_since, help="Raised at or after this time (UTC unless it says otherwise).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def alerts_list(settings: Settings, as_json: bool, **filters) -> None:
    """Alerts, critical first, then newest first."""
    from vreserve import alerts as al

    with _connect(settings) as conn:
        rows = al.list_alerts(conn, al.AlertFilter(**filters))
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_dict(), default=str))
        return
    click.echo(al.render_table(rows))
    click.echo(f"{len(rows)} alert(s) ({filters['state']})")


@alerts.command("show")
@click.argument("alert_id")
@click.pass_obj
def alerts_show(settings: Settings, alert_id: str) -> None:
    """One alert with its details and history (opened, acknowledged, resolved: who, when, note)."""
    from vreserve import alerts as al

    with _connect(settings) as conn:
        try:
            rec = al.get_alert(conn, alert_id)
        except al.AlertNotFound as exc:
            raise click.ClickException(str(exc)) from None
        history = al.alert_actions(conn, alert_id)
    click.echo(json.dumps(rec.to_dict(), indent=2, default=str))
    for h in history:
        click.echo(f"{h.at.isoformat()}  {h.action:<12} {h.actor}: {h.note}")


def _act(settings: Settings, action, alert_id: str, note: str, verb: str) -> None:
    from vreserve import alerts as al

    actor = al.os_actor()
    with _connect(settings) as conn, _audited(conn, f"alerts.{action.__name__}", alert_id):
        try:
            rec = action(conn, alert_id, actor, note)
        except (al.AlertNotFound, al.AlertStateError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{rec.alert_id}: {verb} by {actor} (state {rec.state})")


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--note", default="", help="What you are doing about it.")
@click.pass_obj
def alerts_ack(settings: Settings, alert_id: str, note: str) -> None:
    """Acknowledge an open alert (someone is on it)."""
    from vreserve import alerts as al

    _act(settings, al.acknowledge, alert_id, note, "acknowledged")


@alerts.command("resolve")
@click.argument("alert_id")
@click.option("--note", required=True, help="Why it is resolved (required).")
@click.pass_obj
def alerts_resolve(settings: Settings, alert_id: str, note: str) -> None:
    """Resolve an open alert by hand, saying why."""
    from vreserve import alerts as al

    _act(settings, al.resolve, alert_id, note, "resolved")


# ------------------------------------------------------------------------- declared movements
@click.group("movements")
def movements() -> None:
    """Movements an owner declares (consumption, replenishment): they explain stock changes."""


@movements.command("declare")
@click.option("--site", "site_id", required=True)
@click.option("--material", "material_id", required=True)
@click.option("--kind", type=click.Choice(["consumption", "replenishment"]), required=True)
@click.option("--qty", type=float, required=True, help="Quantity in the material's unit (> 0).")
@click.option("--unit", required=True, help="The material's unit (checked).")
@click.option("--at", "at", callback=_since, help="When the goods moved (default: now).")
@click.option("--id", "movement_id", help="Movement id (default: derived from site, material, kind and time).")
@click.pass_obj
def movements_declare(settings: Settings, site_id, material_id, kind, qty, unit, at, movement_id) -> None:
    """Declare one movement (idempotent on its id)."""
    from vreserve import alerts as al
    from vreserve.reconcile import Movement, declare_movement

    at = at or datetime.now(timezone.utc)
    movement_id = movement_id or f"M-{site_id}-{material_id}-{kind}-{at.strftime('%Y%m%dT%H%M%S.%f')}"
    with _connect(settings) as conn, _audited(conn, "movements.declare", site_id,
                                              {"movement_id": movement_id, "kind": kind, "qty": qty, "unit": unit}):
        try:
            new = declare_movement(conn, Movement(movement_id, site_id, material_id, kind, qty, unit, at),
                                   actor=al.os_actor(), source="cli")
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{movement_id}: {kind} of {qty:g} {unit} at {site_id} ({material_id}) "
               f"{'recorded' if new else 'was already recorded'}")


@movements.command("list")
@click.option("--site", "site_id")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def movements_list(settings: Settings, site_id: str | None, limit: int) -> None:
    """Declared movements, newest first."""
    with _connect(settings) as conn:
        rows = conn.execute("SELECT movement_id, site_id, material_id, kind, qty::float8, unit, at, actor"
                            " FROM stock_movements WHERE (%(s)s::text IS NULL OR site_id = %(s)s)"
                            " ORDER BY at DESC LIMIT %(n)s", {"s": site_id, "n": limit}).fetchall()
    if rows:
        click.echo(table(("at", "site", "material", "kind", "quantity", "unit", "movement", "by"),
                         [(at.isoformat(), site, mat, kind, quantity(qty), unit, mid, actor)
                          for mid, site, mat, kind, qty, unit, at, actor in rows],
                         right=[False] * 4 + [True] + [False] * 3))
    click.echo(f"{len(rows)} movement(s)")


# ------------------------------------------------------------------------------ safety levels
@click.group("safety")
def safety() -> None:
    """Safety levels per grid cell and material (below one: a low_stock alert)."""


@safety.command("list")
@click.option("--cell", "grid_cell")
@click.option("--material", "material_id")
@click.pass_obj
def safety_list(settings: Settings, grid_cell, material_id) -> None:
    from vreserve import safety as sf

    with _connect(settings) as conn:
        levels = sf.list_levels(conn, grid_cell, material_id)
    if levels:
        click.echo(table(("grid cell", "material", "safety level", "unit", ""),
                         [(lv.grid_cell, lv.material_id, quantity(lv.safety_qty), lv.unit,
                           f"set by {lv.set_by} at {lv.set_at.isoformat()}") for lv in levels],
                         right=[False, False, True, False, False]))
    click.echo(f"{len(levels)} safety level(s)")


@safety.command("set")
@click.option("--cell", "grid_cell", required=True)
@click.option("--material", "material_id", required=True)
@click.option("--qty", type=float, required=True, help="In the material's unit, >= 0.")
@click.pass_obj
def safety_set(settings: Settings, grid_cell, material_id, qty) -> None:
    from vreserve import alerts as al
    from vreserve import safety as sf

    with _connect(settings) as conn, _audited(conn, "safety.set", f"{grid_cell}/{material_id}", {"qty": qty}):
        try:
            lv = sf.set_level(conn, grid_cell, material_id, qty, al.os_actor())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{lv.grid_cell} {lv.material_id}: safety level {lv.safety_qty:g} {lv.unit} (set by {lv.set_by})")


@safety.command("remove")
@click.option("--cell", "grid_cell", required=True)
@click.option("--material", "material_id", required=True)
@click.pass_obj
def safety_remove(settings: Settings, grid_cell, material_id) -> None:
    from vreserve import safety as sf

    with _connect(settings) as conn, _audited(conn, "safety.remove", f"{grid_cell}/{material_id}"):
        if not sf.remove_level(conn, grid_cell, material_id):
            raise click.ClickException(f"no safety level for {material_id} in {grid_cell}")
    click.echo(f"{grid_cell} {material_id}: safety level removed")


# --------------------------------------------------------------------------------- webhooks
@click.group("webhooks")
def webhooks() -> None:
    """Webhooks that receive alerts (critical by default), signed with HMAC-SHA256."""


@webhooks.command("add")
@click.option("--id", "webhook_id", required=True)
@click.option("--url", required=True, help="http(s) URL the alerts are POSTed to.")
@click.option("--secret-file", type=click.File("rb"), required=True,
              help="File holding the shared HMAC secret (>= 16 bytes; '-' = stdin). Never on the command line.")
@click.option("--min-severity", type=click.Choice(["info", "warning", "critical"]), default="critical",
              show_default=True)
@click.pass_obj
def webhooks_add(settings: Settings, webhook_id, url, secret_file, min_severity) -> None:
    from vreserve import alerts as al
    from vreserve import webhooks as wh

    secret = secret_file.read().strip()
    with _connect(settings) as conn, _audited(conn, "alert-webhooks.add", webhook_id,
                                              {"url": url, "min_severity": min_severity}):
        try:
            wh.add_webhook(conn, webhook_id, url, secret, al.os_actor(), min_severity)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # psycopg.errors.UniqueViolation
            raise click.ClickException(f"webhook {webhook_id!r} not added: {type(exc).__name__}") from None
    click.echo(f"webhook {webhook_id}: {url} receives {min_severity} alerts and above (secret stored, not shown)")


@webhooks.command("list")
@click.pass_obj
def webhooks_list(settings: Settings) -> None:
    from vreserve import webhooks as wh

    with _connect(settings) as conn:
        hooks = wh.list_webhooks(conn)
        pending = dict(conn.execute("SELECT webhook_id, count(*) FROM alert_deliveries WHERE delivered_at IS NULL"
                                    " GROUP BY 1").fetchall())
    for h in hooks:
        click.echo(f"{h.webhook_id:<20} {h.url:<50} >= {h.min_severity:<8} {'active' if h.active else 'inactive'} "
                   f"pending {pending.get(h.webhook_id, 0)} (added by {h.created_by})")
    click.echo(f"{len(hooks)} webhook(s)")


@webhooks.command("remove")
@click.argument("webhook_id")
@click.pass_obj
def webhooks_remove(settings: Settings, webhook_id: str) -> None:
    from vreserve import webhooks as wh

    with _connect(settings) as conn, _audited(conn, "alert-webhooks.remove", webhook_id):
        if not wh.remove_webhook(conn, webhook_id):
            raise click.ClickException(f"no webhook {webhook_id!r}")
    click.echo(f"webhook {webhook_id} removed")


@alerts.command("notify")
@click.option("--once", is_flag=True, help="One pass, then exit (default: a service, until SIGTERM/SIGINT).")
@click.option("--interval", default=2.0, show_default=True, type=float, help="Seconds between passes.")
@click.pass_obj
def alerts_notify(settings: Settings, once: bool, interval: float) -> None:
    """Post alerts to the registered webhooks (signed, retried with backoff)."""
    import signal
    import threading

    from vreserve import webhooks as wh

    stop = threading.Event()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: stop.set())
    with _connect(settings) as conn:
        while True:
            res = wh.notify_once(conn)
            if res.enqueued or res.delivered or res.failed or once:
                click.echo(f"webhooks: {res.enqueued} queued, {res.delivered} delivered, {res.failed} failed "
                           "(retried with backoff)", err=not once)
            if once or stop.wait(interval):
                break


commands = [alerts, movements, safety, webhooks]
