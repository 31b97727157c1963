"""``vreserve alerts list | show | ack | resolve``: the alert lifecycle from a terminal.

The logic is :mod:`vreserve.alerts` (the HTTP API calls the same functions). The actor here is the
operating-system user, marked ``os-user:<name>``: a terminal session is not an authenticated
identity, and the mark says so in every record it leaves.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from vreserve.settings import Settings


def _connect(settings: Settings):
    from vreserve.db import connect

    try:
        return connect(settings.pg_dsn, autocommit=True)
    except Exception as exc:  # psycopg.OperationalError: say where we tried (no password: host/db only)
        raise click.ClickException(f"cannot reach the database: {exc}") from None


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
    with _connect(settings) as conn:
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


commands = [alerts]
