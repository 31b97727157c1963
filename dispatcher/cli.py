"""``vreserve emergency declare|end|status``, ``vreserve dispatch run``, ``vreserve orders``.

Imports inside the command functions are lazy on purpose: every stage's CLI module is imported by
``vreserve --help``, which stays fast only if the stage's libraries load when a command runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from vreserve import db_access
from vreserve.tables import table


@click.group()
def emergency() -> None:
    """Declare or end an emergency in a region (mode events), and see each region's mode."""


@emergency.command("declare")
@click.option("--region", required=True, help="Region (as in the site registry).")
@click.option("--grid", "grid_cells", multiple=True, help="Limit to these grid cells (repeatable; default: all).")
@click.option("--scenario", "scenario_name", help="Scenario pack giving centres and demand (e.g. wuhan).")
@click.option("--demand", "demand_file", type=click.Path(exists=True, dir_okay=False),
              help="Scenario/demand file (YAML or JSON) giving centres and demand.")
@click.option("--periods", type=click.IntRange(1, 366), required=True, help="Number of periods to plan.")
@click.option("--period-length", default="1d", show_default=True, help="Period length: 30s, 5m, 1h, 1d...")
@click.option("--demand-scale", type=float, default=1.0, show_default=True,
              help="Multiply the file's demand (map a city-sized file onto a smaller registry).")
@click.option("--reason", required=True, help="Why (kept with the event).")
@click.option("--wait", "wait_s", type=float, default=15.0, show_default=True,
              help="Seconds to wait for the dispatcher's verdict (0: do not wait).")
@click.pass_obj
def declare(settings, region, grid_cells, scenario_name, demand_file, periods, period_length, demand_scale,
            reason, wait_s) -> None:
    """Publish a 'declare' event: the dispatcher starts re-planning the region every period.

    Checked first (region, open emergency, grid cells, demand source); the same code as
    `POST /api/v1/emergencies`, recorded in the audit trail with the shell user as the actor."""
    from vreserve import operations as ops
    from vreserve.db import connect

    if bool(scenario_name) == bool(demand_file):
        raise click.UsageError("give exactly one of --scenario NAME or --demand FILE")
    source = scenario_name or str(Path(demand_file).resolve())
    try:
        length = ops.parse_duration(period_length)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    who, publisher = ops.cli_identity(), ops.Publisher(settings)
    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn, \
                ops.audited(conn, who, "emergency.declare", region, {"periods": periods, "source": source}) as info:
            event = ops.declare(conn, publisher, who, region, grid_cells, source, periods, length, reason, demand_scale)
            info["event_id"] = event.event_id
    except ops.Refused as exc:
        raise click.ClickException(f"refused ({exc.code}): {exc.message}; nothing was published") from None
    finally:
        publisher.close()
    click.echo(f"declare event {event.event_id} published for region {region} "
               f"({periods} periods of {length:g} s, demand from {source}) by {who.actor}")
    _report_verdict(settings, event.event_id, wait_s)


@emergency.command("end")
@click.option("--region", required=True)
@click.option("--reason", required=True)
@click.option("--wait", "wait_s", type=float, default=15.0, show_default=True)
@click.pass_obj
def end(settings, region, reason, wait_s) -> None:
    """Publish an 'end' event: re-planning stops and open orders are closed out."""
    from vreserve import operations as ops
    from vreserve.db import connect

    who, publisher = ops.cli_identity(), ops.Publisher(settings)
    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn, \
                ops.audited(conn, who, "emergency.end", region) as info:
            event = ops.end(conn, publisher, who, region, reason)
            info["event_id"] = event.event_id
    except ops.Refused as exc:
        raise click.ClickException(f"refused ({exc.code}): {exc.message}; nothing was published") from None
    finally:
        publisher.close()
    click.echo(f"end event {event.event_id} published for region {region} by {who.actor}")
    _report_verdict(settings, event.event_id, wait_s)


def _report_verdict(settings, event_id: str, wait_s: float) -> None:
    from vreserve.db import connect
    from vreserve.operations import wait_verdict

    if wait_s <= 0:
        return
    with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn:
        verdict = wait_verdict(conn, event_id, wait_s)
    if verdict is None:
        click.echo(f"no dispatcher recorded the event within {wait_s:g} s (is `vreserve dispatch run` running?); "
                   "it will be applied when one does")
        sys.exit(3)
    accepted, error, emergency_id = verdict
    if accepted:
        click.echo(f"accepted: emergency {emergency_id}")
    else:
        click.echo(f"REJECTED: {error}", err=True)
        sys.exit(1)


@emergency.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(settings, as_json) -> None:
    """Each region's mode, current period, last plan and its figures."""
    import json

    from dispatcher.operator import status_rows
    from vreserve.db import connect

    with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn:
        rows = status_rows(conn)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("no emergency has been declared; every region is in normal mode")
        return
    body = []
    for r in rows:
        period = (f"{r['current_period']}/{r['periods']}" if r["current_period"]
                  else f"-/{r['periods']}" if r["periods"] else "-")
        body.append([r["region"], r["mode"], r["emergency_id"], period, r["last_plan_period"] or "-",
                     r["last_plan_status"] or "-",
                     "-" if r["objective"] is None else f"{r['objective']:,.1f}",
                     "-" if r["gap"] is None else format(r["gap"], ".2%"),
                     "-" if r["solve_seconds"] is None else f"{r['solve_seconds']:,.2f}",
                     f"{r['orders']:,}", f"{r['delivered_orders']:,}"])
    click.echo(table(["region", "mode", "emergency", "period", "last plan", "status", "weighted shortage",
                      "gap", "solve, s", "orders", "delivered orders"], body,
                     right=[False, False, False, True, True, False, True, True, True, True, True]))


@click.group()
def dispatch() -> None:
    """The dispatcher service."""


@dispatch.command("run")
@click.option("--time-limit", type=float, default=30.0, show_default=True, help="Solver time limit per plan, s.")
@click.option("--gap", type=float, default=1e-3, show_default=True, help="Relative MIP gap to stop at.")
@click.option("--die-after-persist", type=int, default=None, hidden=True,
              help="Test hook: exit abruptly right after storing this period's plan, before publishing.")
@click.option("--health-port", default=16068, show_default=True, type=int,
              help="Health endpoint http://127.0.0.1:PORT/health (200 ok / 503 with what is failing); 0: none.")
@click.pass_obj
def run(settings, time_limit, gap, die_after_persist, health_port) -> None:
    """Consume mode events and order statuses; re-plan every period of every open emergency."""
    from dispatcher.service import run_service

    run_service(settings, die_after_persist=die_after_persist, time_limit_s=time_limit, gap=gap,
                health_port=health_port or None)


@click.command("orders")
@click.option("--region")
@click.option("--status", "status_", type=click.Choice(
    ["open", "accepted", "in_transit", "delivered", "failed", "cancelled", "closed"]))
@click.option("--emergency", "emergency_id")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_obj
def orders(settings, region, status_, emergency_id, limit) -> None:
    """List dispatch orders with their status (newest first) and a count per status."""
    from dispatcher import book  # lazy: psycopg costs ~0.5 s to import, `vreserve --help` stays fast
    from vreserve.db import connect

    with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn:
        rows, counts = book.order_listing(conn, region, status_, emergency_id, limit)
    if not rows:
        click.echo("no orders match")
        return
    click.echo(table(
        ["order", "region", "period", "leg", "origin", "destination", "material", "qty", "unit", "status",
         "delivered"],
        [[oid, reg, per, leg, orig, dest, mat, f"{float(qty):,g}", unit, st, f"{float(dq):,g}"]
         for oid, reg, per, leg, orig, dest, mat, qty, unit, st, dq, _at in rows],
        right=[False, False, True, False, False, False, False, True, False, False, True]))
    click.echo("by status: " + ", ".join(f"{st} {n} orders" for st, n, _q in counts))


commands = [emergency, dispatch, orders]

