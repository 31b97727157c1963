"""Two dispatchers, three regions in emergency at once, one dispatcher SIGKILLed mid-emergency:
every period of every region is planned once, and every order id is published exactly once
(issue 17: dispatchers scaled out by region)."""
from __future__ import annotations

import json

import signal
import time
from collections import Counter

import pytest

from dispatcher.operator import declare_event, publish_mode
from tests.dispatcher.conftest import log_of
from tests.dispatcher.helpers import SMALL_SCENARIO, TopicReader, make_region, wait_for
from vreserve import topics
from vreserve.db import connect

PERIODS = 3
LENGTH_S = 8.0


def _plans(settings, regions) -> list[tuple[str, int, bool]]:
    with connect(settings.pg_dsn, autocommit=True) as conn:
        return conn.execute("SELECT e.region, p.period, p.published_at IS NOT NULL FROM plans p JOIN emergencies e"
                            " USING (emergency_id) WHERE e.region = ANY(%s) ORDER BY 1, 2", (regions,)).fetchall()


def _order_records(settings, regions) -> list[str]:
    reader = TopicReader(settings, topics.DISPATCH_ORDERS)
    try:
        reader.poll(2.0)
        recs = [_object(v) for _k, v in reader.records]
    finally:
        reader.close()
    return [r["order_id"] for r in recs if r.get("kind") == "order"
            and any(str(r.get("emergency_id")).startswith(f"EM-{g}-") for g in regions)]


def _object(value: bytes) -> dict:
    """A record as a JSON object; {} for anything else (the session's topic also carries other
    tests' deliberately malformed records)."""
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):  # deeply nested fuzz records too
        return {}
    return obj if isinstance(obj, dict) else {}


@pytest.mark.services
@pytest.mark.slow
def test_two_dispatchers_three_regions_one_killed(settings, procs, unique):
    regions = [f"scale{unique[:6]}r{i}" for i in range(3)]
    with connect(settings.pg_dsn, autocommit=True) as conn:
        for region in regions:
            make_region(conn, region, n_central=2, n_cells=2, per_cell=2, stock={"medicine": 50.0, "pork": 20.0})
    dispatchers = [procs.start(settings, "dispatch", "run", name=f"d{i}") for i in range(2)]
    for d in dispatchers:
        wait_for(lambda: "dispatcher: started" in log_of(d), 60, what="dispatcher started")
    for region in regions:
        event = declare_event(region, (), SMALL_SCENARIO, PERIODS, LENGTH_S, "scale-out test",
                              event_id=f"mode-scale-{region}", who="test")
        publish_mode(settings, event.to_json(), region)
    wait_for(lambda: sum(1 for _r, _p, pub in _plans(settings, regions) if pub) >= len(regions), 60,
             what="first periods published")
    dispatchers[0].send_signal(signal.SIGKILL)
    dispatchers[0].wait(10)
    wait_for(lambda: len([1 for _r, _p, pub in _plans(settings, regions) if pub]) == len(regions) * PERIODS,
             PERIODS * LENGTH_S + 60, what="every region's every period published")
    time.sleep(2.0)  # anything published late would show now
    plans = _plans(settings, regions)
    assert sorted((r, p) for r, p, _ in plans) == sorted((r, p) for r in regions for p in range(1, PERIODS + 1))
    orders = _order_records(settings, regions)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        stored = {r[0] for r in conn.execute(
            "SELECT o.order_id FROM dispatch_orders o JOIN emergencies e USING (emergency_id)"
            " WHERE e.region = ANY(%s)", (regions,))}
    assert stored and set(orders) == stored, "an order stored and not published, or published and not stored"
    duplicated = {oid: n for oid, n in Counter(orders).items() if n > 1}
    assert not duplicated, f"{len(duplicated)} order ids published more than once, e.g. {list(duplicated)[:3]}"
