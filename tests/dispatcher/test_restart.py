"""Restartability: a dispatcher that dies mid-period (after storing a plan, before publishing it;
or SIGKILLed at any moment) and is restarted publishes exactly the order ids of a clean run, skips
no period, and supersedes the earlier plans' unexecuted orders with explicit cancel records."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from dispatcher.operator import declare_event, publish_mode
from tests.dispatcher.conftest import log_of
from tests.dispatcher.helpers import SMALL_SCENARIO, TopicReader, make_region, wait_for
from vreserve import topics
from vreserve.db import connect

PERIODS = 3
REGION = "restartville"
#: Long enough that a restarted dispatcher (process start, joining the dispatchers' consumer group
#: and optimizer warm-up included) republishes period 2's plan before period 3's supersede cut-off
#: (its start minus a quarter period), as a punctual one would have: the supersede rule depends on
#: when orders went out (dispatcher.service.supersede_cutoff). 8 s left about 5 s for the restart,
#: which a loaded 2-core machine did not always meet once the dispatcher joins a group (2 of 5 runs).
LENGTH_S = 10.0


def _declare(settings, region: str) -> None:
    event = declare_event(region, (), SMALL_SCENARIO, PERIODS, LENGTH_S, "restart test",
                          event_id="mode-restart-fixed", who="test")
    publish_mode(settings, event.to_json(), region)


def _plans(settings) -> list[tuple[int, bool]]:
    with connect(settings.pg_dsn, autocommit=True) as conn:
        return conn.execute("SELECT p.period, p.published_at IS NOT NULL FROM plans p JOIN emergencies e"
                            " USING (emergency_id) WHERE e.region = %s ORDER BY p.period", (REGION,)).fetchall()


def _all_published(settings) -> bool:
    rows = _plans(settings)
    return len(rows) == PERIODS and all(pub for _p, pub in rows)


def _published(settings) -> tuple[set[str], set[str], int]:
    reader = TopicReader(settings, topics.DISPATCH_ORDERS)
    try:
        reader.poll(2.0)
        recs = reader.json()
    finally:
        reader.close()
    recs = [r for r in recs if r["emergency_id"].startswith(f"EM-{REGION}-")]
    orders = {r["order_id"] for r in recs if r["kind"] == "order"}
    cancels = {r["order_id"] for r in recs if r["kind"] == "cancel"}
    return orders, cancels, len([r for r in recs if r["kind"] == "order"])


@pytest.mark.services
@pytest.mark.slow
def test_killed_dispatcher_publishes_the_clean_runs_order_ids(settings, second_settings, procs):
    region = REGION
    for s in (settings, second_settings):
        with connect(s.pg_dsn, autocommit=True) as conn:
            make_region(conn, region, n_central=2, n_cells=3, per_cell=3,
                        stock={"medicine": 50.0, "pork": 20.0})

    # clean run
    clean = procs.start(settings, "dispatch", "run", name="clean")
    wait_for(lambda: "dispatcher: started" in log_of(clean), 60, what="clean dispatcher started")
    _declare(settings, region)
    wait_for(lambda: _all_published(settings), PERIODS * LENGTH_S + 30, what="clean run's plans")
    clean.send_signal(signal.SIGTERM)
    clean.wait(30)
    clean_orders, clean_cancels, _ = _published(settings)
    assert clean_orders, log_of(clean)

    # killed run: dies right after storing period 2's plan (before publishing), then a SIGKILL
    # mid-period, then a clean finish
    first = procs.start(second_settings, "dispatch", "run", "--die-after-persist", "2", name="die")
    wait_for(lambda: "dispatcher: started" in log_of(first), 60, what="dispatcher started")
    _declare(second_settings, region)
    try:
        first.wait(PERIODS * LENGTH_S + 60)
    except subprocess.TimeoutExpired:
        pytest.fail("the dispatcher did not die after storing period 2; its log:\n" + log_of(first))
    assert first.returncode == 137, log_of(first)
    assert [p for p, pub in _plans(second_settings)] == [1, 2]
    assert not dict(_plans(second_settings))[2], "period 2 stored but not published before the crash"
    second = procs.start(second_settings, "dispatch", "run", name="sigkill")
    wait_for(lambda: dict(_plans(second_settings)).get(2), 30, what="period 2 republished")
    time.sleep(0.3)
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    third = procs.start(second_settings, "dispatch", "run", name="final")
    wait_for(lambda: _all_published(second_settings), PERIODS * LENGTH_S + 30, what="restarted run's plans")
    third.send_signal(signal.SIGTERM)
    third.wait(30)

    killed_orders, killed_cancels, _ = _published(second_settings)
    assert [p for p, _ in _plans(second_settings)] == list(range(1, PERIODS + 1)), "a period was skipped"
    assert killed_orders == clean_orders
    assert killed_cancels == clean_cancels

    # supersede: a newer plan cancelled the older ones' unexecuted (still open) orders that were
    # published before its period's start minus the grace (dispatcher.service.supersede_cutoff)
    from dispatcher.service import supersede_cutoff
    from vreserve.emergencies import get_emergency

    with connect(settings.pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT o.period, o.status, o.superseded_by, c.published_at IS NOT NULL, p.published_at, o.emergency_id"
            " FROM dispatch_orders o JOIN plans p USING (plan_id)"
            " LEFT JOIN order_cancellations c USING (order_id) JOIN emergencies e ON e.emergency_id = o.emergency_id"
            " WHERE e.region = %s ORDER BY o.period", (REGION,)).fetchall()
        em = get_emergency(conn, rows[0][5])
    assert rows
    for period, status, superseded_by, cancel_published, published_at, _em in rows:
        if status == "cancelled":
            later = int(superseded_by.rsplit("-", 1)[1])
            assert later > period and cancel_published and published_at <= supersede_cutoff(em, later)
        else:  # kept: published too late for every later plan to supersede it
            assert status == "open" and superseded_by is None
            assert period == PERIODS or published_at > supersede_cutoff(em, PERIODS)
    # (with periods this short the first tick often finds several periods due at once: a plan made
    # late then keeps the orders published a moment before, which is the point; the rule itself is
    # tested in test_supersede.py)
    assert clean_cancels == {oid for oid in clean_orders if oid in clean_cancels}
