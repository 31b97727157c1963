"""The webhook carrier's own durable record of what it took: an append-only journal file in its
state folder (the carrier is a separate company: it keeps its state itself, not in vreserve's
database).

Why: a webhook delivery answered 200 is never sent again, so an order the carrier took only in
memory would be lost with the process. Each delivery is written (and fsync'ed) *before* the
receiver answers 200, and each order is marked done once the simulator finished it. A restarted
carrier reads the journal back: every key it took is still taken (a redelivery is answered
"already taken", never driven twice), and every order not done is handed to the simulator again,
in the order it was taken.

Format: JSON lines, ``{"key": K, "order_id": ID, "record": {...}}`` per delivery taken and
``{"done": ID}`` per order finished. A torn last line (a crash in the middle of a write, before
the 200) is dropped: the sender did not get its 200 and delivers again. At open the file is
compacted (finished deliveries keep only their key) and written back atomically; one process at a
time holds it (an advisory lock beside it).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger("vreserve.logistics")


class JournalError(Exception):
    """The journal cannot be used (held by another process, unreadable line); the message says why."""


@dataclass
class Replay:
    """What a journal says at open: the keys taken, and the records of orders not done, in order."""

    keys: set[str] = field(default_factory=set)
    pending: list[tuple[str, dict]] = field(default_factory=list)   # (key, record) in the order taken
    done: set[str] = field(default_factory=set)
    dropped_torn_line: bool = False


def fold(lines: list[str]) -> Replay:
    """The journal's state from its lines (pure). Only the last line may be torn."""
    out = Replay()
    taken: list[tuple[str, str, dict | None]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if n == len(lines):
                out.dropped_torn_line = True
                continue
            raise JournalError(f"line {n} is not a journal entry ({exc}); the file was edited or damaged") from None
        if "done" in entry:
            out.done.add(str(entry["done"]))
        elif "key" in entry:
            out.keys.add(str(entry["key"]))
            taken.append((str(entry["key"]), str(entry.get("order_id", "")), entry.get("record")))
    out.pending = [(k, rec) for k, oid, rec in taken if rec is not None and oid not in out.done]
    return out


def compacted(replay: Replay) -> list[str]:
    """Lines that say the same as the journal: keys of finished deliveries, full pending records."""
    pending_keys = {k for k, _ in replay.pending}
    lines = [json.dumps({"key": k}) for k in sorted(replay.keys - pending_keys)]
    lines += [json.dumps({"key": k, "order_id": rec.get("order_id", ""), "record": rec}) for k, rec in replay.pending]
    return lines


class OrderJournal:
    """The journal file at ``path`` (created with its folder, 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._lock: IO[str] | None = None

    def open(self) -> Replay:
        """Lock, read back, compact; then appends go to the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JournalError(f"{self.path} is in use by another carrier process") from None
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        replay = fold(lines)
        if replay.dropped_torn_line:
            log.warning("%s: dropped a torn last line (a write cut by a crash; the sender delivers it again)",
                        self.path)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in compacted(replay)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._file = open(self.path, "a")
        return replay

    def _append(self, entry: dict) -> None:
        if self._file is None:
            raise JournalError("the journal is not open")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def taken(self, key: str, record: dict) -> None:
        """A delivery taken: durable before the receiver answers 200."""
        self._append({"key": key, "order_id": record.get("order_id", ""), "record": record})

    def done(self, order_id: str) -> None:
        """An order finished (delivered, failed or cancelled): not driven again after a restart."""
        self._append({"done": order_id})

    def close(self) -> None:
        for f in (self._file, self._lock):
            if f is not None:
                f.close()
        self._file = self._lock = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
