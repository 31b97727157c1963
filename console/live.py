"""Live events for open consoles: one poller per server process, fanned out to every browser.

Why polling the database and not Kafka: the console shows what the database holds (the same
numbers the API returns), so an event must not run ahead of the row it announces. One loop per
process polls only while at least one browser is subscribed: new ``stock_latest`` rows (by
``updated_at``, with an overlap window so a transaction that committed late is not missed, and
de-duplicated by reading sequence), and a cheap fingerprint of alerts, regions' modes, plans and
orders; a changed fingerprint is announced and the page re-reads what it shows.

Event types (``event:`` field of the stream, JSON ``data:``):
- ``stock``: ``{"readings": [[site, material, qty, unit, ts], ...], "cells": {cell: coverage...},
  "sites": {site: last reading epoch s}}``
- ``alerts``: open alerts by severity; ``mode``: each region's mode; ``plans`` / ``orders``: a
  fingerprint that changed (the page re-reads).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import psycopg

from console.overview import (ALERT_COUNTS_SQL, PAIR_STOCK_SQL, REGIONS_SQL, RESERVED_SQL, CellBook, alert_counts_from_rows,
                              regions_from_rows)

log = logging.getLogger("vreserve.console.live")

#: Seconds between polls while browsers are connected; the reading -> map budget is 2 s.
POLL_INTERVAL_S = 0.4
#: Re-read stock rows this far behind the newest seen ``updated_at`` (a transaction's now() is its
#: start, so a long one commits rows "in the past").
OVERLAP_S = 2.0
#: A comment line keeps proxies and the browser from closing an idle stream.
HEARTBEAT_S = 15.0

#: A full reload of the in-memory cell sums at least this often (contracts, safety levels, registry).
BOOK_RELOAD_S = 60.0

NEW_STOCK_SQL = """
SELECT l.site_id, l.material_id, l.qty::float8, l.unit, l.ts, l.seq, NULL, l.updated_at
FROM stock_latest l
WHERE l.updated_at > %s - make_interval(secs => %s) ORDER BY l.updated_at
"""

FINGERPRINT_SQL = """
SELECT (SELECT count(*) || '/' || COALESCE(max(at)::text, '') || '/' ||
               COALESCE((SELECT max(resolved_at)::text FROM alerts), '') || '/' ||
               COALESCE(max(acknowledged_at)::text, '')
        FROM alerts WHERE resolved_at IS NULL),
       (SELECT count(*) || '/' || COALESCE(max(declared_at)::text, '') || '/' ||
               COALESCE(max(ended_at)::text, '') FROM emergencies),
       (SELECT count(*) || '/' || COALESCE(max(created_at)::text, '') FROM plans),
       (SELECT count(*) || '/' || COALESCE(max(status_at)::text, '') FROM dispatch_orders)
"""


def sse(event: str, data: Any) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


@dataclass
class StockCursor:
    """Where the stock poll is: the newest ``updated_at`` seen and each (site, material)'s last seq."""

    since: Any = None
    seqs: dict[tuple[str, str], int] = field(default_factory=dict)

    def fresh(self, rows: list[tuple]) -> list[tuple]:
        """Rows not announced yet (a row re-read in the overlap window has the same seq)."""
        out = []
        for row in rows:
            key, seq = (row[0], row[1]), row[5]
            if self.seqs.get(key) == seq:
                continue
            self.seqs[key] = seq
            out.append(row)
            if self.since is None or row[7] > self.since:
                self.since = row[7]
        return out


class LiveHub:
    """Subscribers' queues and the one poll loop that feeds them."""

    def __init__(self, pg_dsn: str) -> None:
        self.pg_dsn = pg_dsn
        self.queues: set[asyncio.Queue] = set()
        self.task: asyncio.Task | None = None
        self.polls = 0
        self.book: CellBook | None = None
        self.book_loaded = 0.0

    async def subscribe(self) -> AsyncIterator[bytes]:
        """The event stream of one browser; the poll loop runs while anyone listens."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self.queues.add(queue)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        try:
            yield b"retry: 2000\n\n"
            while queue in self.queues:  # dropped when it overflowed: end, the browser reconnects and re-reads
                try:
                    yield await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    yield b": heartbeat\n\n"
        finally:
            self.queues.discard(queue)

    def current_book(self) -> CellBook | None:
        """The poller's per-cell sums while it runs and they are recent, else None (read the database)."""
        if self.book is None or self.task is None or self.task.done() or not self.queues:
            return None
        return self.book if time.monotonic() - self.book_loaded <= BOOK_RELOAD_S + 5 else None

    def publish(self, chunk: bytes) -> None:
        for q in list(self.queues):
            try:
                q.put_nowait(chunk)
            except asyncio.QueueFull:  # a browser that stopped reading: its stream ends, it reconnects
                self.queues.discard(q)

    async def _run(self) -> None:
        cursor = StockCursor()
        prints: tuple | None = None
        primed = False
        while self.queues:
            try:
                async with await psycopg.AsyncConnection.connect(self.pg_dsn, autocommit=True) as conn:
                    if cursor.since is None:
                        row = await (await conn.execute("SELECT max(updated_at) FROM stock_latest")).fetchone()
                        cursor.since = row[0]
                    if not primed:  # readings already in the table when the loop starts are not news
                        cursor.fresh(await (await conn.execute(NEW_STOCK_SQL, (cursor.since, OVERLAP_S))).fetchall())
                        primed = True
                    while self.queues:
                        prints = await self._poll(conn, cursor, prints)
                        self.polls += 1
                        await asyncio.sleep(POLL_INTERVAL_S)
            except (psycopg.Error, OSError) as exc:
                log.warning("live poll failed, retrying in 2 s: %s", exc)
                await asyncio.sleep(2)

    async def _poll(self, conn, cursor: StockCursor, prints: tuple | None) -> tuple:
        if cursor.since is None:  # nothing ever reported: wait for the first row
            rows = await (await conn.execute(
                NEW_STOCK_SQL.replace("l.updated_at > %s - make_interval(secs => %s)", "true"))).fetchall()
        else:
            rows = await (await conn.execute(NEW_STOCK_SQL, (cursor.since, OVERLAP_S))).fetchall()
        fresh = cursor.fresh(rows)
        now_prints = tuple(await (await conn.execute(FINGERPRINT_SQL)).fetchone())
        if self.book is None or time.monotonic() - self.book_loaded > BOOK_RELOAD_S:
            pairs = await (await conn.execute(PAIR_STOCK_SQL)).fetchall()
            reserved = await (await conn.execute(RESERVED_SQL)).fetchall()
            self.book = await asyncio.to_thread(CellBook, pairs, reserved)  # not on the event loop
            self.book_loaded = time.monotonic()
        elif prints is not None and prints[3] != now_prints[3]:
            self.book.set_reserved(await (await conn.execute(RESERVED_SQL)).fetchall())
        if fresh:
            cells = {self.book.apply(r[0], r[1], r[2], r[3]) for r in fresh} - {None}
            sites: dict[str, float] = {}
            for r in fresh:
                sites[r[0]] = max(sites.get(r[0], 0.0), r[4].timestamp())
            self.publish(sse("stock", {
                "readings": [[r[0], r[1], r[2], r[3], r[4].isoformat()] for r in fresh],
                "cells": self.book.coverages(sorted(cells)), "sites": sites, "sent_at": time.time()}))
        if prints is not None:
            await self._announce_changes(conn, prints, now_prints)
        return now_prints

    async def _announce_changes(self, conn, old: tuple, new: tuple) -> None:
        if old[0] != new[0]:
            self.publish(sse("alerts", alert_counts_from_rows(await (await conn.execute(ALERT_COUNTS_SQL)).fetchall())))
        if old[1] != new[1]:
            rows = await (await conn.execute(REGIONS_SQL)).fetchall()
            self.publish(sse("mode", regions_from_rows(rows, datetime.now(timezone.utc))))
        if old[2] != new[2]:
            self.publish(sse("plans", {"fingerprint": new[2]}))
        if old[3] != new[3]:
            self.publish(sse("orders", {"fingerprint": new[3]}))

