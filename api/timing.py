"""Where a request's time goes inside the server, as a W3C ``Server-Timing`` response header
(``app;dur=3.1, order;dur=0.8, kafka;dur=21.0, audit;dur=4.2, lag;dur=0.4``, milliseconds).

On every write's answer (a few clock reads beside a write's ~1 ms of server CPU); a read gets it
when it sends ``X-Server-Timing`` (any value): on a 0.45 ms live-stock read the header cost
~0.05 ms of server CPU, ~10 %, measured side by side (docs/api.md). `vreserve bench api --stages`
aggregates the header of every answer into per-stage percentiles, which is how the status post's
tail was traced, and an operator reads it with ``curl -i -H 'X-Server-Timing: 1'``. Stages:

- ``app``: from the request's arrival at the app to its response headers (everything below but audit);
- stages a route marks (``auth`` the identity check, ``order`` the post's visibility query,
  ``kafka`` send to the broker's acknowledgement, ...);
- ``audit``: the wait for the request's record in the audit trail (writes only);
- ``lag``: the event loop's largest delay over the last second (how late a timer fired: time the
  loop spent on something else, e.g. a long callback or the garbage collector, or the process
  waiting for a core);
- ``gc``: the garbage collector's longest pause in this process over the last second.
"""
from __future__ import annotations

import asyncio
import gc
import time
from contextlib import contextmanager
from typing import Iterator

#: Seconds between two looks at the event loop's lateness.
LAG_TICK_S = 0.01


#: The request header by which a read asks for the server-timing header.
ASK_HEADER = b"x-server-timing"


def asked(scope) -> bool:
    """Whether the request sent ``X-Server-Timing``."""
    return any(name == ASK_HEADER for name, _ in scope.get("headers", ()))


def add(request, name: str, seconds: float) -> None:
    """Count ``seconds`` under ``name`` for this request (several calls add up)."""
    timing = _timing(request.scope)
    timing[name] = timing.get(name, 0.0) + seconds


@contextmanager
def stage(request, name: str) -> Iterator[None]:
    """Time the block (awaits inside it included) as stage ``name``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(request, name, time.perf_counter() - t0)


def _timing(scope) -> dict[str, float]:
    state = scope.setdefault("state", {})
    return state.setdefault("timing", {})


def header(scope, app_s: float, lag_s: float) -> tuple[bytes, bytes]:
    """The ``server-timing`` header of a request whose app part took ``app_s``."""
    parts = {"app": app_s, **_timing(scope), "lag": lag_s, "gc": GC_PAUSES.recent}
    return b"server-timing", ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in parts.items()).encode()


class RecentMax:
    """The largest value seen in the current or the previous second."""

    def __init__(self) -> None:
        self.current = self.previous = 0.0
        self.window_start = time.monotonic()

    def _roll(self) -> None:
        now = time.monotonic()
        if now - self.window_start >= 2.0:      # nothing seen for a whole window
            self.previous = self.current = 0.0
            self.window_start = now
        elif now - self.window_start >= 1.0:
            self.previous, self.current, self.window_start = self.current, 0.0, now

    def see(self, value: float) -> None:
        self._roll()
        self.current = max(self.current, value)

    @property
    def recent(self) -> float:
        self._roll()
        return max(self.current, self.previous)


class GcPauses(RecentMax):
    """Times each collection of the garbage collector (gc.callbacks), for the ``gc`` stage."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0.0
        self.collections = [0, 0, 0]

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.collections[info["generation"]] += 1
            self.see(time.perf_counter() - self.started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)


GC_PAUSES = GcPauses()


class LoopLag(RecentMax):
    """A task on the event loop that measures how late a 10 ms timer fires; ``recent`` is the largest
    lateness of the current or the previous second."""

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            self.see(time.monotonic() - t0 - LAG_TICK_S)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
