"""Keep Python's cyclic garbage collector off a long-running service's hot path.

A full pass walks every object the process holds; in a service that is mostly what it loaded at
start (modules, classes, the app and its routes: nothing a pass could free). Measured in the API
(`vreserve bench api`, the ``gc`` stage of its server-timing header): full passes of 60-140 ms
stopped the event loop with every request in flight, the largest single part of the p99. So what
exists once the service has started goes to the permanent generation (``gc.freeze``; it lives as
long as the process anyway), and young passes come every ``young`` allocations instead of 700, so
a request's short-lived objects are mostly freed by reference counting before a pass sees them.
Cycles are still collected, only less often. (The stream worker calls it too, with its own
measurement: stream/service.py.)
"""
from __future__ import annotations

import gc

#: Allocations between two young-generation passes (Python's default: 700).
YOUNG_THRESHOLD = 50_000


def freeze_startup_objects(young: int = YOUNG_THRESHOLD) -> None:
    """Call once the service has started: collect, freeze what is left, space out young passes."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young, older, oldest)
