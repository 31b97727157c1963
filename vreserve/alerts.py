"""The alert lifecycle, shared by the CLI (`vreserve alerts`) and the HTTP API.

An alert is **open** when a stage raises it, may be **acknowledged** (by whom, when, with a note:
"someone is on it") and ends **resolved**: by a person (with a note saying why), or by the system
when the condition clears (a stale site reports again, stock is back above its safety level, an
unexplained change is explained after all). Alerts are never duplicated while open: one open alert
per key (kind, site, material, grid cell; an audit finding is its own key), enforced by the
database for every writer (migration 0080), so a repeat only counts on the open alert.

Every action names its actor. This module does not authenticate anyone: the caller passes the
identity it authenticated (the API its user; the CLI the operating-system user, marked
``os-user:<name>`` so nobody mistakes it for an authenticated identity).

Pure parts (filters, checks, rendering) are plain functions; the SQL is thin and runs on a psycopg
(sync) connection in its own transaction. Resolving sets ``published_at`` NULL, so the alert goes
out once more on the alerts topic with ``resolved_at`` (the stream worker's outbox for its kinds,
supervision's for audit discrepancies).
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass, fields
from datetime import datetime

import psycopg

from vreserve.tables import table

#: Which alerts a listing shows: open (acknowledged or not), only those nobody acknowledged yet,
#: only acknowledged open ones, resolved ones, or all.
STATES = ("open", "unacknowledged", "acknowledged", "resolved", "all")
SEVERITIES = ("info", "warning", "critical")
MAX_NOTE = 2000
MAX_ACTOR = 200
MAX_LIMIT = 10_000


class AlertNotFound(LookupError):
    """No alert has that id."""


class AlertStateError(ValueError):
    """The action does not fit the alert's state (e.g. acknowledging a resolved alert)."""


@dataclass(frozen=True)
class AlertFilter:
    state: str = "open"
    kind: str | None = None
    severity: str | None = None
    site_id: str | None = None
    grid_cell: str | None = None
    material_id: str | None = None
    since: datetime | None = None   # raised at or after
    limit: int = 100


@dataclass(frozen=True)
class AlertRecord:
    """One row of ``alerts`` with its lifecycle columns."""

    alert_id: str
    kind: str
    severity: str
    site_id: str | None
    grid_cell: str | None
    material_id: str | None
    message: str
    at: datetime
    details: dict
    open_key: str
    repeats: int
    last_seen_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledge_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_note: str | None

    @property
    def state(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"

    def to_dict(self) -> dict:
        """JSON-ready (times as ISO 8601 text), with the derived ``state``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.isoformat() if isinstance(v, datetime) else v
        out["state"] = self.state
        return out


@dataclass(frozen=True)
class AlertAction:
    alert_id: str
    action: str      # opened, acknowledged, resolved
    actor: str
    note: str
    at: datetime


_COLUMNS = tuple(f.name for f in fields(AlertRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alerts"


def os_actor() -> str:
    """The CLI's actor: the operating-system user, marked as such (not an authenticated identity)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no USER variable
        name = "unknown"
    return f"os-user:{name}"


def check_actor(actor: str) -> str:
    """Every action has an actor: non-empty, printable, bounded."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError("an action on an alert needs an actor")
    actor = actor.strip()
    if len(actor) > MAX_ACTOR or not actor.isprintable():
        raise ValueError(f"actor must be printable text of at most {MAX_ACTOR} characters")
    return actor


def check_note(note: str | None, required: bool) -> str:
    """A note is free text (newlines and tabs allowed, other control characters not), bounded."""
    note = (note or "").strip()
    if required and not note:
        raise ValueError("a note is required: say why (e.g. 'sensor replaced, stock counted')")
    if len(note) > MAX_NOTE:
        raise ValueError(f"note longer than {MAX_NOTE} characters")
    if any(not (ch.isprintable() or ch in "\n\t") for ch in note):
        raise ValueError("note contains control characters")
    return note


def filter_sql(flt: AlertFilter) -> tuple[str, dict]:
    """WHERE clause and parameters of a listing (validates the filter)."""
    if flt.state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {flt.state!r}")
    if flt.severity is not None and flt.severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {flt.severity!r}")
    if not 1 <= flt.limit <= MAX_LIMIT:
        raise ValueError(f"limit must be within 1..{MAX_LIMIT}")
    where = {
        "open": ["resolved_at IS NULL"],
        "unacknowledged": ["resolved_at IS NULL", "acknowledged_at IS NULL"],
        "acknowledged": ["resolved_at IS NULL", "acknowledged_at IS NOT NULL"],
        "resolved": ["resolved_at IS NOT NULL"],
        "all": [],
    }[flt.state]
    params: dict = {"limit": flt.limit}
    for column in ("kind", "severity", "site_id", "grid_cell", "material_id"):
        value = getattr(flt, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if flt.since is not None:
        where.append("at >= %(since)s")
        params["since"] = flt.since
    return (" WHERE " + " AND ".join(where)) if where else "", params


def list_alerts(conn: psycopg.Connection, flt: AlertFilter = AlertFilter()) -> list[AlertRecord]:
    """Alerts matching the filter, critical first, then newest first."""
    where, params = filter_sql(flt)
    sql = (f"{_SELECT}{where} ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,"
           " at DESC, alert_id LIMIT %(limit)s")
    return [AlertRecord(*row) for row in conn.execute(sql, params).fetchall()]


def get_alert(conn: psycopg.Connection, alert_id: str) -> AlertRecord:
    row = conn.execute(f"{_SELECT} WHERE alert_id = %s", (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(f"no alert {alert_id!r}")
    return AlertRecord(*row)


def alert_actions(conn: psycopg.Connection, alert_id: str) -> list[AlertAction]:
    """The alert's history: opened, acknowledged, resolved (who, when, note), oldest first."""
    rows = conn.execute("SELECT alert_id, action, actor, note, at FROM alert_actions WHERE alert_id = %s"
                        " ORDER BY at, action_id", (alert_id,)).fetchall()
    return [AlertAction(*r) for r in rows]


def _locked(conn: psycopg.Connection, alert_id: str) -> AlertRecord:
    row = conn.execute(f"{_SELECT} WHERE alert_id = %s FOR UPDATE", (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(f"no alert {alert_id!r}")
    return AlertRecord(*row)


def acknowledge(conn: psycopg.Connection, alert_id: str, actor: str, note: str = "") -> AlertRecord:
    """Mark an open alert as taken care of. Acknowledging it again by the same actor changes
    nothing; by another actor, or a resolved alert, is refused (AlertStateError)."""
    actor, note = check_actor(actor), check_note(note, required=False)
    with conn.transaction():
        cur = _locked(conn, alert_id)
        if cur.resolved_at is not None:
            raise AlertStateError(f"alert {alert_id} was resolved at {cur.resolved_at.isoformat()} "
                                  f"by {cur.resolved_by}; nothing to acknowledge")
        if cur.acknowledged_at is not None:
            if cur.acknowledged_by == actor:
                return cur
            raise AlertStateError(f"alert {alert_id} was already acknowledged at "
                                  f"{cur.acknowledged_at.isoformat()} by {cur.acknowledged_by}")
        conn.execute("UPDATE alerts SET acknowledged_at = now(), acknowledged_by = %s, acknowledge_note = %s"
                     " WHERE alert_id = %s", (actor, note, alert_id))
    return get_alert(conn, alert_id)


def resolve(conn: psycopg.Connection, alert_id: str, actor: str, note: str) -> AlertRecord:
    """A person closes an open alert, saying why (the note is required). A resolved alert is
    refused (AlertStateError). The alert is published again, with ``resolved_at``."""
    actor, note = check_actor(actor), check_note(note, required=True)
    with conn.transaction():
        cur = _locked(conn, alert_id)
        if cur.resolved_at is not None:
            raise AlertStateError(f"alert {alert_id} was already resolved at {cur.resolved_at.isoformat()} "
                                  f"by {cur.resolved_by}")
        conn.execute("UPDATE alerts SET resolved_at = now(), resolved_by = %s, resolve_note = %s,"
                     " published_at = NULL WHERE alert_id = %s", (actor, note, alert_id))
    return get_alert(conn, alert_id)


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: list[AlertRecord], message_width: int = 90) -> str:
    """A plain table for a terminal (times UTC)."""
    body = []
    for r in rows:
        who = ""
        if r.state == "resolved":
            who = f"{r.resolved_by}: {r.resolve_note or ''}"
        elif r.state == "acknowledged":
            who = f"{r.acknowledged_by}: {r.acknowledge_note or ''}"
        repeats = f" (+{r.repeats} repeat(s))" if r.repeats else ""
        body.append((r.alert_id, r.kind, r.severity, r.state, r.at.strftime("%Y-%m-%d %H:%M:%S"), _short(who, 30),
                     _short(r.message, message_width) + repeats))
    return table(("alert id", "kind", "severity", "state", "raised (UTC)", "by / note", "message"), body,
                 right=[False] * 7)
