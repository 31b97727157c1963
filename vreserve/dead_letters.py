"""Why a site's reports were refused: its dead letters, read back from the dead-letter topic.

The bridge keys every dead letter by the site id of its topic, so one site's refusals are the
records with that key (all partitions are read: a key always lands in one, but which one is the
client's hash, not ours to assume). Read-only, bounded by the topic's end at the start of the call.
The one reader behind `vreserve ingest dead-letters` and ``GET /api/v1/sites/{id}/dead-letters``
(both read with the operations principal, which may read the dead-letter topic).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from kafka import TopicPartition

from vreserve import kafka_clients, topics
from vreserve.kafka_access import OPERATIONS
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.readings import DeadLetter
from vreserve.settings import Settings

#: How long to wait for the broker to hand over the records up to the end offsets, s.
READ_TIMEOUT_S = 30.0


class DeadLettersUnread(RuntimeError):
    """The topic could not be read to its end: an incomplete list would read as the whole one."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused report of a site, as its owner reads it."""

    at: datetime
    kind: str
    reason: str
    payload_head: str

    def line(self) -> str:
        return f"{self.at.isoformat(timespec='seconds')}  {self.kind:<16} {self.reason}  payload: {self.payload_head}"

    def to_dict(self) -> dict:
        return {"at": self.at.isoformat(), "kind": self.kind, "reason": self.reason, "payload_head": self.payload_head}


def site_refusals(settings: Settings, site_id: str, since: timedelta | datetime | None = None, limit: int = 100,
                  offset: int = 0, kind: str | None = None) -> list[Refusal]:
    """The dead letters of ``site_id`` newer than ``since`` (a span back from now, or a time), of
    ``kind`` if given: the ``limit`` newest after skipping the ``offset`` newest, oldest first.
    Only ``offset + limit`` records are held while reading, however many the topic keeps."""

    name = settings.topic(topics.READINGS_DEAD_LETTER)
    consumer = kafka_clients.consumer(settings, OPERATIONS, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=10000)
    try:
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [])]
        if not parts:
            raise DeadLettersUnread(f"topic {name} does not exist (run `vreserve topics`)")
        consumer.assign(parts)
        ends = consumer.end_offsets(parts, timeout_ms=10000)
        starts = _start_offsets(consumer, parts, since)
        for tp in parts:
            consumer.seek(tp, starts.get(tp) if starts.get(tp) is not None else ends[tp])
        # a key lands in one partition, so its records arrive in offset order: keeping the newest
        # offset + limit of them is enough
        newest: deque[Refusal] = deque(maxlen=offset + limit)
        key = site_id.encode()
        # the seek is by the records' broker time (never earlier than the refusal's own `at`); the
        # refusal's time decides
        cutoff = None if since is None else since if isinstance(since, datetime) else utc_now() - since
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                newest.extend(r for r in (_refusal(rec) for rec in recs if rec.key == key)
                              if r and (kind is None or r.kind == kind) and (cutoff is None or r.at > cutoff))
        if any(consumer.position(tp) < ends[tp] for tp in parts):
            raise DeadLettersUnread(f"the broker did not hand over {name} up to its end within "
                                    f"{READ_TIMEOUT_S:g} s: no partial list is given")
        found = sorted(newest, key=lambda r: r.at)
        return found[:max(0, len(found) - offset)] if offset else found
    finally:
        consumer.close()


def _start_offsets(consumer, parts, since: timedelta | datetime | None) -> dict:
    if since is None:
        return dict(consumer.beginning_offsets(parts, timeout_ms=10000))
    cutoff = since if isinstance(since, datetime) else utc_now() - since
    stamp = int(cutoff.timestamp() * 1000)
    found = consumer.offsets_for_times({tp: stamp for tp in parts}, timeout_ms=10000)
    return {tp: (o.offset if o is not None else None) for tp, o in found.items()}


def _refusal(record) -> Refusal | None:
    try:
        letter = DeadLetter.from_json(record.value or b"")
    except SchemaError:
        return None
    head = letter.payload[:120].decode("utf-8", "replace")
    return Refusal(letter.at, str(letter.context.get("kind", "?")), letter.reason, head)


# ------------------------------------------------------------------ the API's long-lived reader
#: Refusals kept per site (its newest); older ones are dropped and the site's answers say so.
KEPT_PER_SITE = 1000
#: Refusals kept over all sites; past it the oldest ones (whatever their site) are dropped first.
KEPT_IN_ALL = 50_000
#: Longest reason, site key and kind the reader keeps, characters (a refusal held is then at most ~1.5 KB;
#: 430 B with the bridge's usual reasons: 21 MB at the overall bound, measured).
MAX_REASON_CHARS = 500
MAX_KEY_CHARS = 200
MAX_KIND_CHARS = 50
#: How long a request waits for the reader to reach the topic's end as of the request, s.
SYNC_TIMEOUT_S = 10.0
#: The reader's poll timeout, ms: how often it publishes its positions when the topic is quiet
#: (the broker's long-poll fetch stays in flight across polls, so this costs no extra fetches).
POLL_MS = 200


@dataclass(frozen=True)
class SiteRefusals:
    """A site's refusals as the reader holds them: ``items`` oldest first (one page), and whether
    the reader still holds every refusal of the site it read (``complete``: none dropped by the caps)."""

    items: list[Refusal]
    complete: bool


class RefusalIndex:
    """Every site's newest refusals in memory, bounded: at most ``per_site`` per site and ``in_all``
    over all sites (past it the oldest to arrive are dropped, whatever their site). Pure
    bookkeeping; the caller holds the lock.

    A site's list is ``complete`` while nothing of it was dropped by its own cap and nothing at all
    was dropped by the overall cap (after that, no site's list is known to be whole: a site's
    older refusals may have been among those dropped)."""

    def __init__(self, per_site: int = KEPT_PER_SITE, in_all: int = KEPT_IN_ALL) -> None:
        self.per_site, self.in_all = per_site, in_all
        self._sites: dict[str, deque[Refusal]] = {}
        self._arrivals: deque[str] = deque()   # the site of each refusal, in the order they came
        self._stale: dict[str, int] = {}       # a site's oldest arrivals already dropped by its own cap
        self._capped: set[str] = set()         # held sites that lost refusals to their own cap
        self.size = 0
        self.dropped_in_all = 0                # refusals dropped by the overall cap

    def add(self, site_id: str, refusal: Refusal) -> None:
        kept = self._sites.setdefault(site_id, deque())
        kept.append(refusal)
        self._arrivals.append(site_id)
        self.size += 1
        if len(kept) > self.per_site:
            kept.popleft()
            self._stale[site_id] = self._stale.get(site_id, 0) + 1
            self._capped.add(site_id)
            self.size -= 1
        while self.size > self.in_all:
            self._drop_oldest()
        if len(self._arrivals) > 2 * self.in_all:
            self._compact()

    def _drop_oldest(self) -> None:
        site = self._arrivals.popleft()
        if self._skip_stale(site):
            return
        kept = self._sites[site]
        kept.popleft()
        self.size -= 1
        self.dropped_in_all += 1
        if not kept:   # its stale arrivals came before this one, so none are left
            del self._sites[site]
            self._capped.discard(site)

    def _skip_stale(self, site: str) -> bool:
        left = self._stale.get(site, 0)
        if left:
            if left == 1:
                del self._stale[site]
            else:
                self._stale[site] = left - 1
        return bool(left)

    def _compact(self) -> None:
        """Drop the arrivals of refusals their site's cap already dropped (one site flooding the topic
        would otherwise grow the arrival list without bound while the overall cap is not reached)."""
        self._arrivals = deque(site for site in self._arrivals if not self._skip_stale(site))

    @property
    def sites(self) -> int:
        return len(self._sites)

    def query(self, site_id: str, since: datetime | None, limit: int, offset: int, kind: str | None) -> SiteRefusals:
        """The ``limit`` newest refusals of the site after skipping the ``offset`` newest, oldest first
        (the order and filters of :func:`site_refusals`)."""
        found = sorted((r for r in self._sites.get(site_id, ()) if (kind is None or r.kind == kind)
                        and (since is None or r.at > since)), key=lambda r: r.at)
        end = max(0, len(found) - offset)
        complete = site_id not in self._capped and self.dropped_in_all == 0
        return SiteRefusals(found[max(0, end - limit):end], complete)


class DeadLetterReader:
    """The API process's one reader of the dead-letter topic (an app-lifetime resource): a thread
    with one consumer tails the topic from its start into a :class:`RefusalIndex`, so a request
    costs no consumer, no login and no scan.

    A request asks the broker for the topic's end offsets *as of the request* (one ListOffsets
    call on a second, long-lived client: on the tailing consumer it would wait behind the
    in-flight long-poll fetch, 0.5 s) and waits until the reader has read up to them, so it sees
    every refusal written before it, as the per-request read did. It waits at most
    ``SYNC_TIMEOUT_S``, and not at all while the reader is failing: then it raises
    :class:`DeadLettersUnread` (a partial list is never given)."""

    def __init__(self, settings: Settings, per_site: int = KEPT_PER_SITE, in_all: int = KEPT_IN_ALL) -> None:
        self.settings = settings
        self.index = RefusalIndex(per_site, in_all)
        self.records_read = 0
        self.consumers_started = 0
        self.error: str | None = None
        self._cond = threading.Condition()
        self._parts: list[TopicPartition] | None = None
        self._positions: dict[TopicPartition, int] = {}   # the reader's next offset per partition
        self._offsets_lock = threading.Lock()
        self._offsets_client = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dead-letter-reader", daemon=True)

    def start(self) -> "DeadLetterReader":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._offsets_lock:
            if self._offsets_client is not None:
                self._offsets_client.close()
                self._offsets_client = None

    def refusals(self, site_id: str, since: datetime | None = None, limit: int = 100, offset: int = 0,
                 kind: str | None = None, timeout_s: float = SYNC_TIMEOUT_S) -> SiteRefusals:
        """The site's refusals once the reader holds everything on the topic now; else DeadLettersUnread
        (at once while the reader is failing, after ``timeout_s`` when it is slow)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._fail_fast()
            self._cond.wait_for(lambda: self._parts is not None or self.error is not None, timeout_s)
            self._fail_fast()
            parts = self._parts
        if parts is None:
            raise DeadLettersUnread(f"the dead-letter topic is not assigned yet after {timeout_s:g} s")
        ends = self._end_offsets(parts)
        with self._cond:
            reached = self._cond.wait_for(
                lambda: self.error is not None or all(self._positions.get(tp, -1) >= ends[tp] for tp in parts),
                max(0.0, deadline - time.monotonic()))
            self._fail_fast()
            if not reached:
                raise DeadLettersUnread(f"the dead-letter topic could not be read to its end within {timeout_s:g} s:"
                                        f" no partial list is given")
            return self.index.query(site_id, since, limit, offset, kind)

    def _fail_fast(self) -> None:
        if self.error is not None:
            raise DeadLettersUnread(f"the dead-letter topic cannot be read now ({self.error})")

    def _end_offsets(self, parts: list[TopicPartition]) -> dict:
        """The topic's end offsets now, from the long-lived offsets client (made again after a failure)."""
        with self._offsets_lock:
            try:
                if self._offsets_client is None:
                    self._offsets_client = kafka_clients.consumer(self.settings, OPERATIONS, group_id=None,
                                                                  enable_auto_commit=False, request_timeout_ms=10000)
                return self._offsets_client.end_offsets(parts, timeout_ms=int(SYNC_TIMEOUT_S * 1000))
            except Exception as exc:
                if self._offsets_client is not None:
                    self._offsets_client.close()
                    self._offsets_client = None
                raise DeadLettersUnread(f"the dead-letter topic's end offsets cannot be read "
                                        f"({type(exc).__name__})") from exc

    def stats(self) -> dict:
        """What the reader did (one consumer for the process's life unless the broker failed it)."""
        return {"records_read": self.records_read, "consumers_started": self.consumers_started,
                "refusals_held": self.index.size, "sites_held": self.index.sites,
                "dropped_by_overall_cap": self.index.dropped_in_all}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tail()
            except Exception as exc:  # noqa: BLE001 - broker down, topic missing: retry; requests get 503
                with self._cond:
                    self.error = f"{type(exc).__name__}: {exc}"
                    self._cond.notify_all()
                self._stop.wait(2.0)

    def _tail(self) -> None:
        name = self.settings.topic(topics.READINGS_DEAD_LETTER)
        consumer = kafka_clients.consumer(self.settings, OPERATIONS, group_id=None, enable_auto_commit=False,
                                          request_timeout_ms=10000)
        self.consumers_started += 1
        try:
            parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [])]
            if not parts:
                raise DeadLettersUnread(f"topic {name} does not exist (run `vreserve topics`)")
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            with self._cond:   # a new consumer reads it all again
                self.index = RefusalIndex(self.index.per_site, self.index.in_all)
                self._positions = {}
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=POLL_MS)
                positions = {tp: consumer.position(tp) for tp in parts}
                self._index(batches, parts, positions)
        finally:
            consumer.close()

    def _index(self, batches: dict, parts: list[TopicPartition], positions: dict) -> None:
        found = [(rec.key.decode("utf-8", "replace"), _refusal(rec)) for recs in batches.values() for rec in recs
                 if rec.key]
        self.records_read += sum(len(recs) for recs in batches.values())
        with self._cond:
            for site_id, refusal in found:
                if refusal is not None:
                    self.index.add(site_id[:MAX_KEY_CHARS], _bounded(refusal))
            self._parts, self._positions, self.error = parts, positions, None
            self._cond.notify_all()


def _bounded(refusal: Refusal) -> Refusal:
    """The refusal with its reason cut to MAX_REASON_CHARS (said in the text), so the bounds on
    counts also bound the memory."""
    if len(refusal.reason) <= MAX_REASON_CHARS and len(refusal.kind) <= MAX_KIND_CHARS:
        return refusal
    reason = refusal.reason if len(refusal.reason) <= MAX_REASON_CHARS else \
        refusal.reason[:MAX_REASON_CHARS] + " ...(cut)"
    return Refusal(refusal.at, refusal.kind[:MAX_KIND_CHARS], reason, refusal.payload_head)
