"""Latency from a reading's sensor timestamp to the commit that made it queryable.

Kept by the worker as a fixed log-spaced histogram (cheap to update, cheap to ship in the health
document); a reader takes two snapshots and subtracts them to get the percentiles of a window.
"""
from __future__ import annotations

import bisect
import math

#: Upper bucket edges in ms: 1 ms * 1.05^k up to ~30 min (5 % resolution).
EDGES_MS: list[float] = [round(1.05 ** k, 3) for k in range(0, int(math.log(1_800_000, 1.05)) + 2)]


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(EDGES_MS) + 1)  # last bucket: beyond the last edge

    def add(self, latency_ms: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(EDGES_MS, latency_ms)] += n


def percentile(counts: list[int], q: float) -> float | None:
    """The upper edge (ms) of the bucket holding quantile ``q`` (0..1) of ``counts``."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank and c:
            return EDGES_MS[i] if i < len(EDGES_MS) else float("inf")
    return float("inf")


def delta(after: list[int], before: list[int] | None) -> list[int]:
    if not before:
        return list(after)
    return [a - b for a, b in zip(after, before)]
