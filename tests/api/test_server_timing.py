"""Answers say where their time went (`server-timing`, api/timing.py; every write, and a read
that asks): the stages of a live-stock read and of a carrier's status post, against the real app;
and the collector-pause and event-loop-lag probes themselves."""
from __future__ import annotations

import asyncio
import gc
import time
import uuid

import pytest

from api import timing


def _stages(response) -> dict[str, float]:
    header = response.headers["server-timing"]
    out = {}
    for part in header.split(","):
        name, dur = part.strip().split(";dur=")
        out[name] = float(dur)
    return out


@pytest.mark.services
def test_reads_and_posts_say_where_their_time_went(world):
    with world.client("viewer") as c:
        plain = c.get(f"/api/v1/sites/{world.sites['apia'][0]}/stock")
        read = c.get(f"/api/v1/sites/{world.sites['apia'][0]}/stock", headers={"X-Server-Timing": "1"})
    assert plain.status_code == read.status_code == 200
    assert "server-timing" not in plain.headers   # a read pays for it only when it asks
    stages = _stages(read)
    assert {"app", "db", "lag", "gc"} <= set(stages) and all(v >= 0 for v in stages.values())
    assert stages["app"] >= stages["db"]
    with world.client("carrier-a") as c:
        post = c.post(f"/api/v1/orders/{world.orders['apia'][0]}/status",
                      json={"status": "accepted", "status_id": f"S-timing-{uuid.uuid4().hex[:8]}"})
    assert post.status_code == 202, post.text
    stages = _stages(post)
    assert {"app", "auth_order", "kafka", "audit", "audit_tx", "lag", "gc"} <= set(stages), stages
    assert stages["app"] >= stages["kafka"] > 0 and stages["audit"] >= stages["audit_tx"] > 0
    with world.client("carrier-a") as c:   # refused before the body is read: the header all the same
        refused = c.post(f"/api/v1/orders/{world.orders['apib'][0]}/status", json={"status": "accepted"})
    assert refused.status_code == 404 and "audit" in _stages(refused)


def test_a_collection_is_timed_and_forgotten_after_two_quiet_seconds():
    pauses = timing.GcPauses()
    gc.callbacks.append(pauses)
    try:
        junk = [[i] for i in range(200_000)]
        gc.collect()
        del junk
        assert pauses.recent > 0 and pauses.collections[2] >= 1
    finally:
        gc.callbacks.remove(pauses)
    pauses.window_start -= 2.5   # as if two quiet seconds had passed
    assert pauses.recent == 0.0


def test_loop_lag_sees_a_blocked_loop():
    async def go() -> float:
        lag = timing.LoopLag()
        lag.start()
        await asyncio.sleep(0.05)
        time.sleep(0.12)            # a callback that holds the loop
        await asyncio.sleep(0.05)
        await lag.stop()
        return lag.recent
    assert asyncio.run(go()) >= 0.1
