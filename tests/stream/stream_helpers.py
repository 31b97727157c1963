"""Helpers and fixtures for the stream tests: private topics, registry rows, a real worker subprocess.

(A uniquely named module: several test folders have a conftest.py, so tests never import from
"conftest" by name.)
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics
from vreserve.settings import PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stream_settings(settings: Settings, unique: str) -> Iterator[Settings]:
    """The session's database, but topics (and so the worker's group/changelog) of this test;
    the topics are deleted afterwards (Faust's changelog and assignor topics too)."""
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    s = settings.with_(topic_prefix=f"{settings.topic_prefix}{unique}.")
    ensure_topics(s)
    yield s
    admin = kafka_clients.admin(s, ADMIN, request_timeout_ms=15000)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(s.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    except Exception as exc:  # noqa: BLE001 - a leftover test topic is harmless
        print(f"could not delete test topics: {exc}")
    finally:
        admin.close()


def add_registry(dsn: str, sites: list[tuple[str, str, str]], materials: dict[str, str],
                 contracted: dict[tuple[str, str], float], safety: dict[tuple[str, str], float] = {}) -> None:
    """sites: (site_id, grid_cell, owner_kind); materials: id -> unit."""
    with connect(dsn, autocommit=True) as conn:
        for m, unit in materials.items():
            conn.execute("INSERT INTO materials VALUES (%s, %s, %s, 'protective', true) ON CONFLICT DO NOTHING",
                         (m, m.title(), unit))
        for site_id, cell, kind in sites:
            conn.execute(
                "INSERT INTO sites (site_id, name, owner_id, owner_kind, tier, region, grid_cell, lat, lon)"
                " VALUES (%s, %s, %s, %s, 'centralized', 'R-test', %s, 30, 114)", (site_id, site_id, f"o-{site_id}", kind, cell))
        for (site_id, m), q in contracted.items():
            conn.execute("INSERT INTO site_materials VALUES (%s, %s, %s)", (site_id, m, q))
        for (cell, m), q in safety.items():
            conn.execute("INSERT INTO safety_levels VALUES (%s, %s, %s)", (cell, m, q))


class StreamWorker:
    """``vreserve stream run`` as a real subprocess (so SIGKILL is a real crash)."""

    def __init__(self, settings: Settings, state_dir: Path, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.port = free_port()
        self.extra_args = extra_args
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = state_dir / f"worker-{self.port}.log"

    def start(self, timeout_s: float = 60.0) -> "StreamWorker":
        env = {**os.environ, "VR_TOPIC_PREFIX": self.settings.topic_prefix, "VR_PG_DSN": self.settings.pg_dsn,
               "VR_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap, "VR_STATE_DIR": str(self.state_dir),
               **self.extra_env}
        self.port = free_port()
        self.log_path = self.state_dir / f"worker-{self.port}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vreserve.cli", "stream", "run", "--web-port", str(self.port),
             "--loglevel", "info", *self.extra_args],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            h = self.health()
            if h and h.get("status") == "ok" and h.get("assigned_partitions"):
                return self
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy within {timeout_s} s:\n{self.log_tail()}")

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait_for(self, predicate, timeout_s: float = 60.0, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout_s
        h = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker died:\n{self.log_tail()}"
            h = self.health()
            if h and predicate(h):
                return h
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last health {h}\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator:
    workers: list[StreamWorker] = []

    def make(settings: Settings, *args: str, env: dict[str, str] | None = None) -> StreamWorker:
        w = StreamWorker(settings, tmp_path, args, env)
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()


def consume_all(settings: Settings, topic: str, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` up to its end offsets at the time of the call."""
    from kafka import TopicPartition
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    consumer = kafka_clients.consumer(settings, ADMIN, enable_auto_commit=False, group_id=None)
    name = settings.topic(topic)
    parts = [TopicPartition(name, p) for p in range(settings.partitions)]
    out = []
    try:
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(p) < end[p] for p in parts):
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(recs)
    finally:
        consumer.close()
    return out
