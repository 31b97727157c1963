"""The tamper-evident audit trail: one append-only row per state-changing request or command.

Each row's hash covers its own fields and the previous row's hash (a hash chain), so editing,
removing or inserting a row anywhere breaks every hash after it; :func:`verify` finds the first
broken row. Rows are appended under a transaction-scoped advisory lock, so concurrent API
instances still form one chain. The table refuses UPDATE / DELETE / TRUNCATE (migration 0070).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

GENESIS = "0" * 64
#: Advisory lock key serialising appends (any constant the project does not use elsewhere).
_LOCK_KEY = 7_070_001
_FIELDS = ("seq", "at", "actor", "source", "action", "target", "outcome", "status", "detail")


def canonical_detail(detail: dict | None) -> str:
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), default=str)


def row_hash(prev_hash: str, seq: int, at: datetime, actor: str, source: str, action: str, target: str,
             outcome: str, status: int, detail: str) -> str:
    """SHA-256 over the previous hash and this row's fields, unambiguously separated."""
    at_text = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [prev_hash, str(seq), at_text, actor, source, action, target, outcome, str(status), detail]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One record to append, before the chain gives it a seq and a hash."""
    actor: str
    source: str
    action: str
    outcome: str
    status: int
    target: str = ""
    detail: dict | None = None
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


_LAST_SQL = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_INSERT_SQL = ("INSERT INTO audit_log (seq, at, actor, source, action, target, outcome, status, detail, prev_hash,"
               " hash)"
               " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)")


def chain(last: tuple[int, str] | None, entries: list[Entry]) -> list[tuple]:
    """The rows (in _INSERT_SQL's order) that extend a chain ending at ``last`` (seq, hash) by ``entries``.

    Pure: the caller holds the lock between reading ``last`` and inserting these rows."""
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    rows = []
    for e in entries:
        seq, target, text = seq + 1, e.target[:500], canonical_detail(e.detail)
        digest = row_hash(prev, seq, e.at, e.actor, e.source, e.action, target, e.outcome, e.status, text)
        rows.append((seq, e.at, e.actor, e.source, e.action, target, e.outcome, e.status, text, prev, digest))
        prev = digest
    return rows


def append(conn, actor: str, source: str, action: str, outcome: str, status: int,
           target: str = "", detail: dict | None = None) -> int:
    """Append one record (own transaction if the connection is in autocommit). Returns its seq."""
    return append_many(conn, [Entry(actor, source, action, outcome, status, target, detail)])[-1]


def append_many(conn, entries: list[Entry]) -> list[int]:
    """Append records in one transaction under the chain's lock (one lock and one commit for all:
    what lets a busy API keep up, see AuditWriter in api/app.py). Returns their seqs."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        rows = chain(conn.execute(_LAST_SQL).fetchone(), entries)
        conn.cursor().executemany(_INSERT_SQL, rows)
    return [r[0] for r in rows]


async def append_many_async(aconn, entries: list[Entry]) -> list[int]:
    """:func:`append_many` on an async connection (the API's event loop), in two round trips
    (pipeline mode: BEGIN, the lock and the chain's end in one; the rows and COMMIT in the other).
    The chain's lock is held from the first to the end of the second, and on a busy event loop each
    round trip waits its turn: five round trips held it, and so stalled the other API processes'
    appends, for up to 45 ms at the p99 (`vreserve bench api`, the ``audit_tx`` stage)."""
    async with aconn.pipeline():
        async with aconn.transaction():
            await aconn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur = await aconn.execute(_LAST_SQL)
            rows = chain(await cur.fetchone(), entries)
            await aconn.cursor().executemany(_INSERT_SQL, rows)
    return [r[0] for r in rows]


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(conn, batch: int = 5000) -> VerifyResult:
    """Walk the chain from the first row; report the first row whose hash or link does not hold."""
    prev, expected_seq, count, after = GENESIS, 1, 0, 0
    while True:
        rows = conn.execute(f"SELECT {', '.join(_FIELDS)}, prev_hash, hash FROM audit_log WHERE seq > %s"
                            " ORDER BY seq LIMIT %s", (after, batch)).fetchall()
        if not rows:
            return VerifyResult(count, True)
        for r in rows:
            seq, at, actor, source, action, target, outcome, status, detail, prev_hash, digest = r
            if seq != expected_seq:
                return VerifyResult(count, False, seq, f"row {expected_seq} is missing (next row is {seq})")
            if prev_hash != prev:
                return VerifyResult(count, False, seq, f"row {seq} does not link to row {seq - 1}")
            if row_hash(prev, seq, at, actor, source, action, target, outcome, status, detail) != digest:
                return VerifyResult(count, False, seq, f"row {seq} was changed after it was written")
            prev, expected_seq, count, after = digest, seq + 1, count + 1, seq


def recent(conn, limit: int = 50, offset: int = 0, actor: str | None = None) -> list[dict]:
    rows = conn.execute(
        f"SELECT {', '.join(_FIELDS)}, hash FROM audit_log WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)"
        " ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s",
        {"actor": actor, "limit": limit, "offset": offset}).fetchall()
    out = []
    for r in rows:
        d = dict(zip(_FIELDS + ("hash",), r))
        d["detail"] = json.loads(d["detail"])
        out.append(d)
    return out
