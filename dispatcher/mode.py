"""Mode events: check a declare/end against the registry and open emergencies, record it, apply it.

Every event read from the mode topic is recorded in ``mode_events`` exactly once (by event id;
a malformed one by its topic position), accepted or not. A rejected event changes nothing else
and its reason goes to the mode-errors topic as well (the caller publishes it).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from psycopg.types.json import Jsonb

from vreserve.operations import check_demand_source
from vreserve.schemas.common import SchemaError, loads_object, utc_now
from vreserve.schemas.dispatch import ModeError, ModeEvent, stable_id


@dataclass(frozen=True)
class ModeOutcome:
    """What became of one mode event. ``duplicate``: seen before (a replay); nothing done again."""

    accepted: bool
    event_id: str
    region: str
    kind: str
    error: str | None = None
    emergency_id: str | None = None
    duplicate: bool = False

    def error_record(self, raw: bytes) -> ModeError:
        return ModeError(error=self.error or "", at=utc_now(), raw=raw[:2000].decode("utf-8", "replace"),
                         event_id=self.event_id, region=self.region, kind=self.kind)


def emergency_id_for(event: ModeEvent) -> str:
    """Deterministic from the declare event: a replayed declare finds its emergency again."""
    return stable_id(f"EM-{event.region}", event.event_id, length=10)


def apply_mode_record(
    conn,
    raw: bytes,
    position: str,
    check_source: Callable[[str, int], str | None] = check_demand_source,
) -> ModeOutcome:
    """Validate and apply one raw mode-topic record in one transaction; never raises on bad input.

    ``position`` (``partition:offset``) names a malformed record that has no event id of its own.
    """
    try:
        event = ModeEvent.from_json(raw)
    except SchemaError as exc:
        return _record_malformed(conn, raw, position, str(exc))
    with conn.transaction():
        seen = conn.execute(
            "SELECT accepted, error, emergency_id FROM mode_events WHERE event_id = %s", (event.event_id,)
        ).fetchone()
        if seen:
            return ModeOutcome(seen[0], event.event_id, event.region, event.kind, seen[1], seen[2], duplicate=True)
        error, emergency_id = _check(conn, event, check_source)
        if error is None:
            if event.kind == "declare":
                emergency_id = emergency_id_for(event)
                conn.execute(
                    "INSERT INTO emergencies (emergency_id, region, grid_cells, declared_at, declared_by, reason,"
                    " periods, period_length_s, demand_source, demand_scale)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (emergency_id, event.region, list(event.grid_cells), event.at, event.actor, event.reason,
                     event.periods, event.period_length_s, event.demand_source, event.demand_scale),
                )
            else:
                conn.execute(
                    "UPDATE emergencies SET ended_at = %s, ended_by = %s, end_reason = %s WHERE emergency_id = %s",
                    (max(event.at, _declared_at(conn, emergency_id)), event.actor, event.reason, emergency_id),
                )
        conn.execute(
            "INSERT INTO mode_events (event_id, region, kind, at, actor, reason, payload, accepted, error, emergency_id)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (event.event_id, event.region, event.kind, event.at, event.actor, event.reason,
             Jsonb(event.to_payload()), error is None, error, emergency_id),
        )
    return ModeOutcome(error is None, event.event_id, event.region, event.kind, error, emergency_id)


def _declared_at(conn, emergency_id: str) -> datetime:
    return conn.execute("SELECT declared_at FROM emergencies WHERE emergency_id = %s", (emergency_id,)).fetchone()[0]


def _check(conn, event: ModeEvent, check_source) -> tuple[str | None, str | None]:
    region_known = conn.execute("SELECT 1 FROM sites WHERE region = %s LIMIT 1", (event.region,)).fetchone()
    if not region_known:
        return f"unknown region {event.region!r}: no site of the registry is in it", None
    open_row = conn.execute(
        "SELECT emergency_id, declared_at FROM emergencies WHERE region = %s AND ended_at IS NULL",
        (event.region,),
    ).fetchone()
    if event.kind == "end":
        if open_row is None:
            return f"end without declare: region {event.region!r} is not in emergency", None
        return None, open_row[0]
    if open_row is not None:
        return f"region {event.region!r} is already in emergency {open_row[0]} (declared {open_row[1]:%Y-%m-%d %H:%M:%S} UTC)", open_row[0]
    if event.grid_cells:
        known = {r[0] for r in conn.execute(
            "SELECT DISTINCT grid_cell FROM sites WHERE region = %s AND grid_cell = ANY(%s)",
            (event.region, list(event.grid_cells)))}
        unknown = sorted(set(event.grid_cells) - known)
        if unknown:
            return f"unknown grid cell(s) in region {event.region!r}: {', '.join(unknown[:10])}", None
    problem = check_source(event.demand_source or "", event.periods or 0)
    if problem:
        return problem, None
    return None, None


def _record_malformed(conn, raw: bytes, position: str, reason: str) -> ModeOutcome:
    """Keep a malformed record (what we could read of it) with its reason, once per topic position."""
    region, kind, actor, at = "?", "malformed", "?", utc_now()
    try:
        obj = loads_object(raw, "mode event")
        region = str(obj.get("region") or "?")[:128]
        actor = str(obj.get("actor") or "?")[:128]
    except SchemaError:
        pass
    event_id = stable_id("MODE-BAD", position)
    text = raw[:4000].decode("utf-8", "replace")
    with conn.transaction():
        seen = conn.execute("SELECT error FROM mode_events WHERE event_id = %s", (event_id,)).fetchone()
        if seen:
            return ModeOutcome(False, event_id, region, kind, seen[0], duplicate=True)
        conn.execute(
            "INSERT INTO mode_events (event_id, region, kind, at, actor, reason, payload, accepted, error)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,false,%s)",
            (event_id, region, kind, at, actor, "malformed", Jsonb({"raw": text, "position": position}),
             f"malformed mode event: {reason}"),
        )
    return ModeOutcome(False, event_id, region, kind, f"malformed mode event: {reason}")
