"""``vreserve contracts | settle | assess | audit | grid``: supervision's commands.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import click

from vreserve import db_access
from vreserve.settings import Settings, redact

#: Default output folder, relative to the working directory (never the checkout or the package).
OUT_DIR = Path("out")


def _connect(settings: Settings):
    from vreserve.db import connect

    try:
        return connect(settings.pg_dsn_for(db_access.SUPERVISION), autocommit=True)
    except Exception as exc:  # psycopg.OperationalError: say where we tried
        raise click.ClickException(f"cannot reach the database at {redact(settings.pg_dsn)}: {redact(str(exc))}") from None


def _date(ctx, param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


# ----------------------------------------------------------------------------------- contracts
@click.group("contracts", invoke_without_command=True)
@click.option("--site", help="Only this site's contracts.")
@click.option("--valid-on", callback=_date, help="Only contracts valid on this day (YYYY-MM-DD).")
@click.pass_context
def contracts(ctx: click.Context, site: str | None, valid_on: date | None) -> None:
    """List contracts (no subcommand), or load them from a file (`contracts load FILE`)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(contracts_list, site=site, valid_on=valid_on)


@contracts.command("list")
@click.option("--site")
@click.option("--valid-on", callback=_date)
@click.pass_obj
def contracts_list(settings: Settings, site: str | None, valid_on: date | None) -> None:
    """Every contract: committed quantity (material unit), validity, fees and penalties (minor units)."""
    from supervision import contracts as c
    from vreserve.contracts import list_contracts

    with _connect(settings) as conn:
        rows = list_contracts(conn, site, valid_on)
    click.echo(c.render(rows))
    click.echo(f"{len(rows)} contract(s); money in minor currency units")


@contracts.command("load")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def contracts_load(settings: Settings, file: Path) -> None:
    """Load or update contracts from a YAML or CSV FILE (format: docs/supervision.md). All or nothing."""
    from supervision import contracts as c
    from vreserve import operations as ops
    from vreserve.contracts import ContractsRejected

    with _connect(settings) as conn:
        try:
            with ops.audited(conn, ops.cli_identity(), "contracts.load", file.name) as info:
                try:
                    result = c.load(conn, file)
                except ContractsRejected as exc:
                    raise ops.Refused("invalid_contracts", str(exc), 422) from None
                info.update(added=result.inserted, updated=result.updated, contract_ids=list(result.contract_ids[:100]))
        except ops.Refused as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"{file}: {result.inserted} contract(s) added, {result.updated} updated")


# ---------------------------------------------------------------------------------- settlement
@click.command("settle")
@click.option("--emergency", "emergency_id", required=True, help="Emergency id to settle.")
@click.option("--from", "period_from", callback=_date, help="Settlement period start (default: declared day).")
@click.option("--to", "period_to", callback=_date, help="Settlement period end (default: end day).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Folder for CSV and JSON (default out/settlement).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="What to print on stdout (the files are always written).")
@click.pass_obj
def settle(settings: Settings, emergency_id: str, period_from, period_to, out_dir: Path | None, fmt: str) -> None:
    """Settle an emergency with every owner: call-off payments, standby fees, penalties (minor units).

    Running it again issues nothing new unless a status record arrived since; then it issues an
    ADJUSTMENT version with only the change.
    """
    from supervision import settle_run
    from vreserve import operations as ops
    from vreserve.sql_settlement import SettlementError, settle as settle_emergency

    who = ops.cli_identity()
    with _connect(settings) as conn:
        try:
            with ops.audited(conn, who, "settlement.settle", emergency_id,
                             {"period_from": str(period_from or ""), "period_to": str(period_to or "")}) as info:
                try:
                    result = settle_emergency(conn, emergency_id, who.actor, period_from, period_to,
                                              progress=lambda m: click.echo(f"[settle] {m}", err=True))
                except SettlementError as exc:
                    raise ops.Refused("settlement_refused", str(exc)) from None
                info.update(issued=result.issued.statement_id if result.issued else None)
        except ops.Refused as exc:
            raise click.ClickException(exc.message) from None
    paths = settle_run.write_files(result, out_dir or OUT_DIR / "settlement", settings.currency)
    if fmt == "table":
        click.echo(settle_run.render(result))
    else:
        path = next(p for p in paths if p.suffix == "." + fmt)
        click.echo(path.read_text(), nl=False)
    if result.issued is None:
        msg = f"unchanged: {result.versions[-1].statement_id} still holds (no new facts)"
    elif result.issued.kind == "adjustment":
        msg = f"issued ADJUSTMENT {result.issued.statement_id}: {result.issued.total_minor:+d} minor units"
    else:
        msg = f"issued {result.issued.statement_id}: {result.issued.total_minor} minor units"
    click.echo(f"{msg}; files: {', '.join(str(p) for p in paths)}", err=True)


# ---------------------------------------------------------------------------------- assessment
@click.command("assess")
@click.option("--emergency", "emergency_id", required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Folder for the PNG chart and CSV (default out/assessment).")
@click.option("--top", default=30, show_default=True, help="Site rows to print.")
@click.pass_obj
def assess(settings: Settings, emergency_id: str, out_dir: Path | None, top: int) -> None:
    """Rank the sites that supplied an emergency: fulfilment, response time, data reliability, audits."""
    import csv

    from supervision.assessment import chart
    from vreserve import assessment as a
    from vreserve.tables import table
    from vreserve.sql_assessment import load_site_facts
    from vreserve.sql_supply import SettlementError

    with _connect(settings) as conn:
        try:
            facts, window = load_site_facts(conn, emergency_id, settings.reading_interval_s)
        except SettlementError as exc:
            raise click.ClickException(str(exc)) from None
    if not facts:
        raise click.ClickException(f"emergency {emergency_id} has no supply orders to assess")
    sites, kinds = a.assess(facts)
    out_dir = out_dir or OUT_DIR / "assessment"
    png = chart(sites, kinds, out_dir / f"assessment-{emergency_id}.png", f"Emergency {emergency_id}: site performance")
    csv_path = out_dir / f"assessment-{emergency_id}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "site_id", "owner_id", "owner_kind", "orders", "fulfilment_share", "median_response_min",
                    "on_time_share", "reliability_share", "audit_discrepancy_share", "score"])
        for s in sites:
            w.writerow([s.rank, s.site_id, s.owner_id, s.owner_kind, s.orders, s.fulfilment, s.median_response_min,
                        s.on_time_share, s.reliability, s.discrepancy_share, s.score])
    click.echo(f"readings window {window['from']:%Y-%m-%d %H:%M:%S} .. {window['to']:%Y-%m-%d %H:%M:%S} "
               f"({window['seconds']:.0f} s, one reading expected every {window['reading_interval_s']:g} s)"
               + ("" if window["readings_history"] else "; no readings history table: reliability n/a"))
    click.echo("\nBy owner kind")
    click.echo(table(["owner kind", "sites", "fulfilment", "median response (min)", "on time", "reliability",
                      "audit discrepancies"],
                     [[k.owner_kind, k.sites, a.pct(k.fulfilment), a.minutes(k.median_response_min),
                       a.pct(k.on_time_share), a.pct(k.reliability), a.pct(k.discrepancy_share)] for k in kinds]))
    click.echo("\nRanking")
    click.echo(table(["rank", "site", "owner kind", "orders", "fulfilment", "median response (min)", "on time",
                      "reliability", "audit discrepancies", "score (0-100)"],
                     [[s.rank, s.site_id, s.owner_kind, s.orders, a.pct(s.fulfilment), a.minutes(s.median_response_min),
                       a.pct(s.on_time_share), a.pct(s.reliability), a.pct(s.discrepancy_share), f"{100 * s.score:.1f}"]
                      for s in sites[:top]]))
    if len(sites) > top:
        click.echo(f"... {len(sites) - top} more in {csv_path}")
    click.echo(f"chart: {png}\ncsv: {csv_path}")


# -------------------------------------------------------------------------------------- audits
@click.group("audit")
def audit() -> None:
    """Spot checks: plan risk-weighted audits, record counted quantities, consume the audits topic."""


@audit.command("plan")
@click.option("--count", "count", type=click.IntRange(min=1), required=True, help="Sites to draw.")
@click.option("--seed", type=int, default=None, help="Random seed (default: today's date as YYYYMMDD).")
@click.option("--cell", help="Only sites of this grid cell.")
@click.pass_obj
def audit_plan(settings: Settings, count: int, seed: int | None, cell: str | None) -> None:
    """Draw COUNT sites to inspect, weighted towards risk; every site keeps a chance (seeded, reproducible).

    The plan is kept (`GET /api/v1/audit-plans`; the same draw again is the same plan) and the draw
    is in the audit trail with you as the actor, like a plan drawn over the API."""
    from vreserve.tables import table
    from vreserve import operations as ops
    from vreserve.sql_audit_plan import NoSitesToDraw, draw_plan

    seed = int(datetime.now(timezone.utc).strftime("%Y%m%d")) if seed is None else seed
    who = ops.cli_identity()
    with _connect(settings) as conn:
        try:
            with ops.audited(conn, who, "audit-plans.draw", cell or "", {"count": count, "seed": seed}) as info:
                try:
                    plan, new = draw_plan(conn, who.actor, count, seed, cell)
                except NoSitesToDraw as exc:
                    raise ops.Refused("no_sites", str(exc), 404) from None
                info.update(plan_id=plan.plan_id, new=new)
        except ops.Refused as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"audit plan {plan.plan_id}: {len(plan.drawn)} of {plan.sites_considered} site(s), seed {seed} "
               f"(rerun with --seed {seed} to reproduce)")
    click.echo(table(["#", "site", "grid cell", "weight", "share of total weight", "why"],
                     [[i + 1, w.risk.site_id, w.risk.grid_cell, f"{w.weight:.3f}",
                       f"{100 * w.weight / plan.total_weight:.2f}%", "; ".join(w.reasons)]
                      for i, w in enumerate(plan.drawn)]))


def _print_result(r) -> None:
    if r.duplicate:
        click.echo(f"audit {r.audit_id} was already recorded; nothing changed "
                   f"(trust {r.trust_before:.2f} -> {r.trust_after:.2f}, status {r.status_after})")
        return
    verdict = "PASSED" if r.passed else f"FAILED: {100 * r.shortfall_share:.1f}% of reported units missing"
    click.echo(f"audit {r.audit_id} of {r.site_id} {verdict}; trust {r.trust_before:.2f} -> {r.trust_after:.2f}; "
               f"status {r.status_before} -> {r.status_after}")
    for a in r.alerts:
        click.echo(f"  alert {a['alert_id']} ({a['severity']}): {a['message']}")


@audit.command("record")
@click.option("--site", "site_id", help="Audited site id.")
@click.option("--count", "counts", multiple=True, metavar="MATERIAL=QTY",
              help="Counted quantity of a material, in its unit (repeat per material).")
@click.option("--auditor", default="cli", show_default=True)
@click.option("--audit-id", help="Unique id (default: derived from site, auditor and time).")
@click.option("--at", "at_text", help="Time of the count, RFC 3339 (default: now).")
@click.option("--json", "json_file", type=click.Path(path_type=Path), help="An audit record file instead (schema in docs).")
@click.pass_obj
def audit_record(settings: Settings, site_id, counts, auditor, audit_id, at_text, json_file) -> None:
    """Record an auditor's counted quantities: compares with reported stock, updates trust and status."""
    from supervision import audit_topic, sql_audits
    from vreserve import kafka_clients
    from vreserve import operations as ops
    from vreserve.kafka_access import SUPERVISION
    from vreserve.schemas.audits import AuditRecord
    from vreserve.schemas.common import SchemaError, format_ts

    try:
        if json_file is not None:
            try:
                raw = json_file.read_bytes()
            except OSError as exc:
                raise SchemaError(f"cannot read {json_file}: {exc.strerror}") from None
            rec = AuditRecord.from_json(raw)
        else:
            if not site_id or not counts:
                raise click.UsageError("give --site and at least one --count MATERIAL=QTY (or --json FILE)")
            items = []
            for c in counts:
                material, sep, qty = c.partition("=")
                if not sep:
                    raise SchemaError(f"--count {c!r}: want MATERIAL=QTY")
                try:
                    q = float(qty)
                except ValueError:
                    raise SchemaError(f"--count {c!r}: {qty!r} is not a number") from None
                items.append({"material": material, "counted_qty": q})
            at = at_text or format_ts(datetime.now(timezone.utc))
            aid = audit_id or f"A-{site_id}-{auditor}-{at.replace(':', '').replace('-', '')}"
            rec = AuditRecord.from_payload({"v": 1, "audit_id": aid, "site_id": site_id, "auditor": auditor,
                                            "at": at, "counts": items})
    except SchemaError as exc:
        raise click.ClickException(f"bad audit record: {exc}") from None
    with _connect(settings) as conn:
        try:
            with ops.audited(conn, ops.cli_identity(), "audits.record", rec.site_id, {"audit_id": rec.audit_id}):
                try:
                    result = sql_audits.record_audit(conn, rec, "cli")
                except sql_audits.AuditRejected as exc:
                    raise ops.Refused("audit_rejected", f"{exc}; nothing changed", 422) from None
        except ops.Refused as exc:
            raise click.ClickException(f"bad audit record: {exc.message}") from None
    _print_result(result)
    try:
        producer = kafka_clients.producer(settings, SUPERVISION, max_block_ms=5000, bootstrap_timeout_ms=5000)
        try:
            with _connect(settings) as conn:
                audit_topic.publish_pending_alerts(conn, producer, settings)
        finally:
            producer.close(5)
    except Exception as exc:  # the audit is recorded; its alert waits in the outbox
        if result.alerts:
            click.echo(f"warning: alert(s) stored but not published to {settings.topic('alerts')} ({exc}); "
                       "the next `vreserve audit record` or `audit consume` publishes them", err=True)


@audit.command("consume")
@click.option("--max-records", type=int, help="Stop after this many records.")
@click.option("--idle-timeout", type=float, help="Stop after this many seconds without a record.")
@click.option("--group", help="Consumer group (default: <prefix>supervision-audits).")
@click.pass_obj
def audit_consume(settings: Settings, max_records, idle_timeout, group) -> None:
    """Apply audit records from the audits topic (bad ones become audit_rejections rows with the reason)."""
    from supervision import audit_topic

    stats = audit_topic.consume(settings, group=group, max_records=max_records, idle_timeout_s=idle_timeout,
                                progress=lambda m: click.echo(m, err=True))
    click.echo(f"{stats.records} record(s): {stats.applied} applied, {stats.duplicates} duplicate(s), "
               f"{stats.rejected} rejected, {stats.quarantined} quarantined, {stats.discrepancies} discrepancy alert(s)")


# ---------------------------------------------------------------------------------------- grid
@click.command("grid")
@click.option("--cell", help="One grid cell, with its sites.")
@click.pass_obj
def grid(settings: Settings, cell: str | None) -> None:
    """Per grid cell: sites, contracted vs reported vs audited stock (material units), open alerts."""
    from supervision import grid as g

    with _connect(settings) as conn:
        try:
            click.echo(g.render(conn, cell))
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None


# ------------------------------------------------------------------------------ reserve balance
@click.group("reserve")
def reserve() -> None:
    """Normal times: keep the reserve fit for the next emergency."""


@reserve.command("balance")
@click.option("--region", default="wuhan", show_default=True)
@click.option("--scenario", default="wuhan", show_default=True, help="Planning scenario (pack name or file).")
@click.option("--days", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Target: days of the scenario's expected demand.")
@click.option("--procurement-factor", default=2.0, show_default=True, type=float,
              help="Procurement price = scenario price x this (a raise at a standby fee is preferred).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the map-ready JSON (cells with position and figures) here.")
@click.option("--all-cells", is_flag=True, help="Print every cell, not only those under target.")
@click.pass_obj
def reserve_balance(settings: Settings, region, scenario, days, procurement_factor, json_path, all_cells) -> None:
    """Coverage per grid cell and material against DAYS of expected demand; cells under target and
    a suggested rebalancing (owners to raise committed stock, at their standby fee) or procurement,
    solved as a small LP. Quantities in the material's unit, money in minor currency units."""
    import json

    from vreserve.reserve_balance import BalanceError, region_balance
    from vreserve.tables import table

    click.echo(f"reserve balance of {region}: target {days:g} day(s) of scenario {scenario!r} demand ...", err=True)
    with _connect(settings) as conn:
        try:
            result = region_balance(conn, region, scenario, days, procurement_factor)
        except BalanceError as exc:
            raise click.ClickException(str(exc)) from None
    shown = [r for r in result.rows if all_cells or r.under_target]
    click.echo(table(["grid cell", "material", "target", "covered", "coverage (days)", "raise at sites",
                      "standby fee (minor/day)", "procure"],
                     [[r.grid_cell, r.material_id, f"{r.target:,.1f} {r.unit}", f"{r.covered:,.1f} {r.unit}",
                       "-" if r.daily_demand <= 0 else f"{r.coverage_days:.1f}",
                       f"{sum(x['qty'] for x in r.raises):,.1f} {r.unit} ({len(r.raises)} site(s))",
                       f"{sum(x['fee_minor_per_day'] for x in r.raises):,.2f}", f"{r.procure:,.1f} {r.unit}"]
                      for r in shown]))
    click.echo(f"{result.under} of {len(result.rows)} cell-material pairs under target; fees in minor currency units"
               " per day")
    if json_path:
        json_path.write_text(json.dumps(result.map_document(), indent=1))
        click.echo(f"map-ready JSON written to {json_path}")


commands = [contracts, settle, assess, audit, grid, reserve]
