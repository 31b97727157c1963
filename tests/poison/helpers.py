"""Helpers of the poison-record tests: produce raw records and learn their offsets, read a topic,
and the subprocess helpers of tests/dispatcher."""
from __future__ import annotations

import time

from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN

from tests.conftest import read_topic  # noqa: F401 - the poison tests take it from here
from tests.dispatcher.conftest import Procs, log_of  # noqa: F401 - the poison tests run `vreserve` the same way

def produce(settings, logical: str, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Send raw (key, value) records; their (partition, offset) in order."""
    producer = kafka_clients.producer(settings, ADMIN, acks="all", max_request_size=2 * 1024 * 1024)
    try:
        futures = [producer.send(settings.topic(logical), key=k, value=v) for k, v in records]
        producer.flush(60)
        return [(m.partition, m.offset) for m in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close(5)


def wait_for(predicate, timeout: float, what: str, step: float = 0.2, alive=None):
    """Poll ``predicate`` until truthy (returned) or the timeout; ``alive()`` may raise meanwhile."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def alive(p) -> None:
    if p.poll() is not None:
        raise AssertionError(f"the service exited with {p.returncode}:\n{log_of(p)[-3000:]}")


def project_tracebacks(stderr: str) -> list[str]:
    """The tracebacks in ``stderr`` that pass through the project's own code.

    kafka-python 3.0 logs a traceback of its own when a socket closes under its reader thread
    (``kafka/net/transport.py``: ``'NoneType' object has no attribute 'recv'``) and then recovers;
    that is the library's log line, not our consumer failing, so only tracebacks with a frame
    outside site-packages count."""
    blocks = stderr.split("Traceback (most recent call last):")[1:]
    return [b for b in blocks
            if any(line.strip().startswith('File "') and "site-packages" not in line
                   and "/lib/python3" not in line for line in b.splitlines())]
