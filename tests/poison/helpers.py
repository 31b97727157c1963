"""Helpers of the poison-record tests: produce raw records and learn their offsets, read a topic,
run `vreserve` subprocesses that are always stopped."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.dispatcher.conftest import settings_env

ROOT = Path(__file__).resolve().parents[2]
VRESERVE = [sys.executable, "-m", "vreserve.cli"]


def produce(settings, logical: str, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Send raw (key, value) records; their (partition, offset) in order."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    try:
        futures = [producer.send(settings.topic(logical), key=k, value=v) for k, v in records]
        producer.flush(60)
        return [(m.partition, m.offset) for m in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close(5)


def read_topic(settings, logical: str, done, timeout: float = 60.0) -> list:
    """Every record of a topic from the start until ``done(records)`` or the timeout."""
    topic = settings.topic(logical)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                             fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if done(records):
                break
        return records
    finally:
        consumer.close()


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


class Procs:
    """`vreserve ...` subprocesses, each stopped at teardown (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []

    def start(self, settings, *args: str, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}-{len(self.started)}.log", "w")
        p = subprocess.Popen(VRESERVE + list(args), cwd=ROOT, env=settings_env(settings), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        p.log_path = log.name  # type: ignore[attr-defined]
        self.started.append(p)
        return p

    def run(self, settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(VRESERVE + list(args), cwd=ROOT, env=settings_env(settings), capture_output=True,
                              text=True, timeout=timeout)

    def stop_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.started:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def log_of(p) -> str:
    return Path(p.log_path).read_text()


def alive(p) -> None:
    if p.poll() is not None:
        raise AssertionError(f"the service exited with {p.returncode}:\n{log_of(p)[-3000:]}")
