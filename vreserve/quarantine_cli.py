"""``vreserve quarantine list|replay``: records a consumer skipped after failing on them N times.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import json

import click

from vreserve import db_access
from vreserve.decode import key_text, preview


@click.group("quarantine")
def group() -> None:
    """Records that made a consumer fail repeatedly and were set aside (see README, guarantees)."""


@group.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Also records already replayed.")
@click.option("--consumer", default=None, help="Only this consumer (dispatcher, supervision-audits, ...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, raw bytes in base64.")
@click.pass_obj
def list_command(settings, include_replayed: bool, consumer: str | None, as_json: bool) -> None:
    """List quarantined records (and those still being counted) with their error."""
    import base64

    from vreserve.db import connect
    from vreserve.quarantine import list_quarantined

    import psycopg

    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn:
            rows = list_quarantined(conn, include_replayed, consumer)
    except psycopg.errors.UndefinedTable:
        raise click.ClickException("no quarantine table in this database: run `vreserve db migrate`") from None
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the database: {str(exc).splitlines()[0]}") from None
    if not rows:
        click.echo("no quarantined records")
    for q in rows:
        state = ("replayed " + f"{q.replayed_at:%Y-%m-%d %H:%M:%S} UTC" if q.replayed_at else
                 "quarantined" if q.quarantined_at else "counting")
        if as_json:
            click.echo(json.dumps({
                "id": q.quarantine_id, "consumer": q.consumer, "topic": q.topic, "partition": q.partition,
                "offset": q.offset, "key_b64": base64.b64encode(q.key).decode() if q.key is not None else None,
                "raw_b64": base64.b64encode(q.raw).decode(), "error": q.error, "attempts": q.attempts,
                "first_seen": q.first_seen.isoformat(), "last_seen": q.last_seen.isoformat(), "state": state}))
            continue
        click.echo(f"#{q.quarantine_id} {state}: {q.consumer} {q.topic}[{q.partition}]@{q.offset} "
                   f"key={key_text(q.key, 80)!r} {len(q.raw)} bytes, {q.attempts} failure(s) "
                   f"{q.first_seen:%Y-%m-%d %H:%M:%S}..{q.last_seen:%H:%M:%S} UTC\n"
                   f"    error: {q.error[:300]}\n    record: {preview(q.raw, 200)}")


@group.command("replay")
@click.argument("quarantine_id", type=int)
@click.pass_obj
def replay_command(settings, quarantine_id: int) -> None:
    """Publish a quarantined record's original key and bytes to its topic again (after a fix)."""
    from vreserve import operations as ops
    from vreserve.db import connect
    from vreserve.kafka_access import ADMIN

    who, publisher = ops.cli_identity(), ops.Publisher(settings, ADMIN)  # any topic: an administrator's act
    try:
        with connect(settings.pg_dsn_for(db_access.API), autocommit=True) as conn:
            with ops.audited(conn, who, "quarantine.replay", f"#{quarantine_id}") as info:
                info.update(ops.replay_quarantined(conn, publisher, who, quarantine_id))
    except ops.Refused as exc:
        raise click.ClickException(f"{exc.message} (see `vreserve quarantine list --all`)") from None
    finally:
        publisher.close()
    click.echo(f"record #{quarantine_id} published again to {info['topic']}[{info['partition']}]@{info['offset']} "
               f"({info['bytes']} bytes); marked replayed by {who.actor}")


commands = [group]
