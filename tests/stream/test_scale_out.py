"""Two stream workers in one consumer group: they split the readings partitions, and when one is
SIGKILLed mid-stream the other takes its partitions over (their state read back from the
database) and the tables end exactly as a from-scratch computation says."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from stream_helpers import add_registry
from stream.loadgen import producer, reading_batch, send_batches
from test_stream_worker import FAST, FAST_ENV, db_state, from_scratch
from vreserve.schemas.common import utc_now

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_two_workers_split_partitions_and_one_takes_over_after_sigkill(stream_settings, unique, worker_factory):
    s = stream_settings
    assert s.partitions >= 2
    mat = f"{unique}-mask"
    sites = [f"{unique}-S{i:03d}" for i in range(120)]
    add_registry(s.pg_dsn, [(x, f"{unique}-G", "ngo") for x in sites], {mat: "box"}, {(x, mat): 100 for x in sites})
    t0 = utc_now() - timedelta(minutes=10)
    batches = [reading_batch(x, seq, t0 + timedelta(seconds=seq), {mat: (float(200 - seq), "box")})
               for seq in range(1, 16) for x in sites]
    first = worker_factory(s, "--batch-max", "50", "--batch-within", "0.05", *FAST, env=FAST_ENV).start()
    second = worker_factory(s, "--batch-max", "50", "--batch-within", "0.05", *FAST, env=FAST_ENV).start()

    def split(h1, h2) -> bool:
        a, b = set(h1["assigned_partitions"]), set(h2["assigned_partitions"])
        return bool(a) and bool(b) and not a & b and a | b == set(range(s.partitions))
    deadline = time.monotonic() + 90
    while not split(first.health() or {"assigned_partitions": []}, second.health() or {"assigned_partitions": []}):
        assert time.monotonic() < deadline, f"partitions not split: {first.health()} / {second.health()}"
        time.sleep(0.3)
    mine_first = set(first.health()["assigned_partitions"])

    stop = threading.Event()

    def produce():
        prod = producer(s, linger_ms=0)
        try:
            for i in range(0, len(batches), 60):
                if stop.is_set():
                    break
                send_batches(s, batches[i:i + 60], prod)
                time.sleep(0.05)
        finally:
            prod.close()

    t = threading.Thread(target=produce)
    t.start()
    try:
        # both take part before the kill
        first.wait_for(lambda h: h["records"] >= 100, 60, "first worker under way")
        second.wait_for(lambda h: h["records"] >= 100, 60, "second worker under way")
        first.kill()
    finally:
        t.join(timeout=120)
    processed = db_state(s.pg_dsn, unique)
    assert len(processed[1]) < len(batches), "the kill was not mid-stream"
    # The survivor gets every partition, with the killed worker's sites read back from the database.
    h = second.wait_for(lambda h: set(h["assigned_partitions"]) == set(range(s.partitions)), 90, "take-over")
    second.wait_for(lambda h: h["table_sites"] == len(sites), 90, "every site's state held")
    latest, history = from_scratch(batches)
    deadline = time.monotonic() + 120
    while db_state(s.pg_dsn, unique) != (latest, history) and time.monotonic() < deadline:
        time.sleep(0.5)
    got_latest, got_history = db_state(s.pg_dsn, unique)
    assert got_latest == latest and got_history == history, f"{len(history) - len(got_history)} rows missing"
    h = second.health()
    assert h["partitions_loaded"] >= s.partitions and mine_first, h
    assert h["offset_gaps"] == 0, h  # the take-over started at the committed offsets: nothing skipped
