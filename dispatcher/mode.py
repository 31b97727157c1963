"""Mode events: check a declare/end against the registry and open emergencies, record it, apply it.

Every event read from the mode topic is recorded in ``mode_events`` exactly once (by event id;
a malformed one by its topic position), accepted or not. A rejected event changes nothing else
and its reason goes to the mode-errors topic as well (the caller publishes it).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable

from dispatcher import book
from vreserve.decode import preview, safe_text
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
        return ModeError(error=self.error or "", at=utc_now(), raw=preview(raw, 2000),
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
        seen = book.mode_event_verdict(conn, event.event_id)
        if seen:
            return ModeOutcome(seen[0], event.event_id, event.region, event.kind, seen[1], seen[2], duplicate=True)
        error, emergency_id = _check(conn, event, check_source)
        if error is None:
            if event.kind == "declare":
                emergency_id = emergency_id_for(event)
                book.store_declared(conn, event, emergency_id)
            else:
                book.store_ended(conn, event, emergency_id)
        book.store_mode_event(conn, event.event_id, event.region, event.kind, event.at, event.actor, event.reason,
                              event.to_payload(), error, emergency_id)
    return ModeOutcome(error is None, event.event_id, event.region, event.kind, error, emergency_id)


def _check(conn, event: ModeEvent, check_source) -> tuple[str | None, str | None]:
    if not book.region_known(conn, event.region):
        return f"unknown region {event.region!r}: no site of the registry is in it", None
    open_row = book.open_emergency_of(conn, event.region)
    if event.kind == "end":
        if open_row is None:
            return f"end without declare: region {event.region!r} is not in emergency", None
        return None, open_row[0]
    if open_row is not None:
        return f"region {event.region!r} is already in emergency {open_row[0]} (declared {open_row[1]:%Y-%m-%d %H:%M:%S} UTC)", open_row[0]
    if event.grid_cells:
        known = book.known_grid_cells(conn, event.region, event.grid_cells)
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
        region = safe_text(obj.get("region") or "?", 128)
        actor = safe_text(obj.get("actor") or "?", 128)
    except SchemaError:
        pass
    event_id = stable_id("MODE-BAD", position)
    # The record is data, whatever it holds: its exact bytes in base64, a readable excerpt beside.
    kept = {"raw_b64": base64.b64encode(raw[:256 * 1024]).decode(), "raw_bytes": len(raw),
            "raw": preview(raw, 4000), "position": position}
    reason = safe_text(reason)
    with conn.transaction():
        seen = book.mode_event_verdict(conn, event_id)
        if seen:
            return ModeOutcome(False, event_id, region, kind, seen[1], duplicate=True)
        book.store_mode_event(conn, event_id, region, kind, at, actor, "malformed", kept,
                              f"malformed mode event: {reason}", None)
    return ModeOutcome(False, event_id, region, kind, f"malformed mode event: {reason}")
