"""``vreserve stream run`` (the Faust worker) and ``vreserve stock`` (the virtual warehouse).

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from vreserve import db_access
from vreserve.settings import Settings
from vreserve.tables import table


@click.group("stream")
def stream_group() -> None:
    """The live virtual warehouse: a Faust worker from the readings topic to PostgreSQL."""


@stream_group.command("run")
@click.option("--web-port", type=int, default=None, help="Health endpoint port (default: VR_STREAM_WEB_PORT).")
@click.option("--batch-max", type=int, default=2000, show_default=True, help="Records per database batch.")
@click.option("--writers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Database writers: a batch's partitions are split among them and written in parallel.")
@click.option("--batch-within", type=float, default=0.2, show_default=True, help="Longest wait to fill a batch, s.")
@click.option("--stale-intervals", type=float, default=3.0, show_default=True,
              help="A site is stale after this many reading intervals of silence.")
@click.option("--settle", "settle_s", type=float, default=10.0, show_default=True,
              help="Seconds a reading waits before its change is reconciled against picks and declared movements.")
@click.option("--change-tolerance", type=float, default=0.1, show_default=True,
              help="Unexplained change, as a share of the quantity (at least 1 unit), treated as noise.")
@click.option("--aggregate-interval", type=float, default=5.0, show_default=True,
              help="Seconds between aggregate refreshes and stale/low-stock checks.")
@click.option("--reconcile-interval", type=float, default=None,
              help="Least seconds between reconciliation passes (default: the --settle time).")
@click.option("--loglevel", default="warning", show_default=True)
@click.pass_obj
def run(settings: Settings, web_port, batch_max, writers, batch_within, stale_intervals, settle_s, change_tolerance,
        aggregate_interval, reconcile_interval, loglevel) -> None:
    """Run the stream worker until interrupted; health at http://127.0.0.1:PORT/health."""
    from stream.options import StreamOptions
    from stream.worker import run_worker

    options = StreamOptions(batch_max=batch_max, writers=writers, batch_within_s=batch_within,
                            stale_intervals=stale_intervals, settle_s=settle_s,
                            change_tolerance=change_tolerance,
                            aggregate_interval_s=aggregate_interval, reconcile_interval_s=reconcile_interval,
                            web_port=web_port)
    click.echo(f"stream worker: {settings.topic('readings')} -> {settings.pg_dsn.split('@')[-1]}, "
               f"health on 127.0.0.1:{web_port or settings.stream_web_port}/health", err=True)
    run_worker(settings, options, loglevel=loglevel)


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    from vreserve.schemas.common import SchemaError, parse_ts

    try:
        return parse_ts(value, "--at")
    except SchemaError:
        try:
            naive = datetime.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"not a time: {value!r} (want e.g. 2026-11-22T08:00:00Z)") from None
        return naive.replace(tzinfo=timezone.utc) if naive.tzinfo is None else naive


def _fmt(x: float) -> str:
    return f"{x:,.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x):,}"


@click.command("stock")
@click.option("--grid", help="Only this grid cell.")
@click.option("--material", help="Only this material id.")
@click.option("--owner-kind", type=click.Choice(["government", "enterprise", "ecommerce", "ngo", "household"]))
@click.option("--at", "at_text", help="As reported at this time (RFC 3339; no offset = UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@click.pass_obj
def stock(settings: Settings, grid, material, owner_kind, at_text, as_json) -> None:
    """The virtual warehouse per grid cell and material: reported, contracted, reserved by open
    supply orders, safety level and what is available above it, in each material's unit."""
    from vreserve.db import connect

    from stream.query import totals_by_material, virtual_warehouse

    at = _parse_at(at_text)
    with connect(settings.pg_dsn_for(db_access.STREAM)) as conn:
        rows = virtual_warehouse(conn, grid=grid, material=material, owner_kind=owner_kind, at=at)
    if as_json:
        click.echo(json.dumps({"at": at.isoformat() if at else None,
                               "filters": {"grid": grid, "material": material, "owner_kind": owner_kind},
                               "rows": [r.to_dict() for r in rows],
                               "totals": totals_by_material(rows)}, indent=2))
        return
    when = f"as reported at {at.isoformat()}" if at else "latest readings"
    click.echo(f"Virtual warehouse ({when}); quantities in each material's unit")
    if not rows:
        click.echo("(no sites match)")
        return
    head = ("grid cell", "material", "unit", "sites rep/contr", "reported", "contracted",
            "reserved", "safety", "available")
    body = [
        (r.grid_cell, r.material_id, r.unit, f"{r.sites_reporting}/{r.sites_contracted}",
         _fmt(float(r.reported_qty)), _fmt(float(r.contracted_qty)), _fmt(float(r.reserved_qty)),
         _fmt(float(r.safety_qty)), _fmt(float(r.available_qty)) + (" BELOW SAFETY" if r.available_qty < 0 else ""))
        for r in rows
    ]
    click.echo(table(head, body, right=[False] * 3 + [True] * 6))
    click.echo("")
    click.echo("Totals per material:")
    for t in totals_by_material(rows):
        click.echo(f"  {t['material_id']}: reported {_fmt(t['reported_qty'])} {t['unit']}, contracted "
                   f"{_fmt(t['contracted_qty'])} {t['unit']}, reserved {_fmt(t['reserved_qty'])} {t['unit']}, "
                   f"available above safety {_fmt(t['available_qty'])} {t['unit']} "
                   f"({t['sites_reporting']} site reports in {t['grid_cells']} grid cells)")
    mismatched = sum(r.unit_mismatches for r in rows)
    if mismatched:
        click.echo(f"warning: {mismatched} latest readings use another unit than the material's and are not counted")


commands = [stream_group, stock]
