"""The worker's in-memory latest state, per readings partition, rebuilt from the database.

Why no Faust table with a changelog topic: ``stock_latest`` already holds the durable,
forward-only, de-duplicating latest state, written in the same transaction as the readings whose
offsets are then committed. A changelog would be a second copy of it, and producing it cost a
sixth of the worker's time. So when a worker is given a partition it reads that partition's
sites from ``stock_latest`` (which sites a partition holds: ``stream_sites``, written with the
batch in which the worker first saw the site), and drops them again when the partition goes.

The state in memory only decides what the database write does not need: the health counters
(newer / replayed / older) and the device-restart alerts. The writes never consult it, so a
replay after a crash writes exactly what a first pass would.
"""
from __future__ import annotations

import time
from typing import Iterable

from vreserve.schemas.common import format_ts

#: ``site -> material -> held state`` (the dict of :mod:`stream.state`)
SiteStates = dict[str, dict[str, dict]]


class LatestMemory:
    """Held states of the partitions this worker owns."""

    def __init__(self) -> None:
        self._partitions: dict[int, SiteStates] = {}
        #: sites first seen in this process since the last :meth:`take_new_sites` (partition, site)
        self._new_sites: list[tuple[int, str]] = []
        self._keys, self._counted_at = 0, float("-inf")

    def owns(self, partition: int) -> bool:
        return partition in self._partitions

    def load(self, partition: int, rows: Iterable[tuple]) -> None:
        """Replace a partition's states by ``stock_latest`` rows
        ``(site_id, material_id, qty, unit, ts, seq, boot)``."""
        sites: SiteStates = {}
        for site_id, material_id, qty, unit, ts, seq, boot in rows:
            sites.setdefault(site_id, {})[material_id] = {
                "qty": float(qty), "unit": unit, "ts": format_ts(ts), "seq": int(seq), "boot": int(boot)}
        self._partitions[partition] = sites

    def drop(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def owned(self) -> list[int]:
        return sorted(self._partitions)

    def site(self, partition: int, site_id: str) -> dict[str, dict]:
        """The site's ``material -> state`` (created empty, and noted as new, when unknown; a
        throw-away one for a partition no longer owned, whose records a rebalance left behind)."""
        sites = self._partitions.get(partition)
        if sites is None:
            return {}
        states = sites.get(site_id)
        if states is None:
            states = sites[site_id] = {}
            self._new_sites.append((partition, site_id))
        return states

    def take_new_sites(self) -> list[tuple[int, str]]:
        new, self._new_sites = self._new_sites, []
        return new

    def sites(self) -> int:
        return sum(len(s) for s in self._partitions.values())

    def keys(self) -> int:
        """(site, material) pairs held (counted at most once a second: the health page asks often,
        and at 100,000 keys a count costs milliseconds of the worker's one thread)."""
        now = time.monotonic()
        if now - self._counted_at >= 1.0:
            self._keys = sum(len(m) for s in self._partitions.values() for m in s.values())
            self._counted_at = now
        return self._keys
