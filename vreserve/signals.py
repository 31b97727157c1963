"""Stop a long-running consumer cleanly on SIGTERM / SIGINT.

Why: a consumer killed by the default handler never sends LeaveGroup; its group then waits out the
session timeout (45 s) before a restarted consumer gets a partition. With :func:`stop_on_signals`
the loop sees the flag, leaves its loop and closes its Kafka consumer (which leaves the group).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs; previous handlers restored after.

    Off the main thread (signals cannot be handled there) the event is only set by the caller."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
