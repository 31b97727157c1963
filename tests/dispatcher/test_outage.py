"""Dispatch through a Kafka outage (issue 11, part 1), on the project's own runner.

The test starts its OWN Kafka broker (deploy/runner.py's ``Kafka`` on a free port and a state folder
of its own: killing the shared broker would break every other session), runs the dispatcher and the
logistics simulator as `vreserve` subprocesses against it, declares an emergency, SIGKILLs the
broker while period 2's orders are on the road and restarts it at once (the broker itself takes
15-30 s to be back on this machine: periods 3 and often 4 are planned while it is away, the last
ones after its return), and checks:

* every period's plan is stored on time (from the database; the broker is not needed to plan);
* the plans stored during the outage are published within seconds of the broker's return;
* no order is cancelled (no catch-up supersedes orders carriers took or had no time to take);
* every order ends delivered, or failed with a stated reason;
* the logistics simulator resumes within seconds (it accepts the held orders promptly).

It prints the figures the issue asks for: plans late (s), orders superseded, orders delivered of planned.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from deploy.runner import Kafka, _alive, _port_open
from tests.dispatcher.conftest import log_of
from tests.dispatcher.kafka_jars import link_or_fetch_jars, session_kafka_jars  # noqa: F401 (fixture)
from tests.dispatcher.helpers import SiteStandIn, make_region, wait_for
from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics
from vreserve.settings import Settings

PERIODS = 6
OUTAGE_SCENARIO = str(Path(__file__).parent / "data" / "outage.yaml")
LENGTH_S = 8.0
#: a plan is "on time" when stored within this many seconds of its period's start (the old code
#: was 30-50 s late: a blocked end_offsets, then retries); generous for a loaded 2-core machine
ON_TIME_S = 6.0
#: plans held during the outage are published within this many seconds of the broker's return
PUBLISHED_AFTER_RETURN_S = 8.0
#: the carrier accepts a held order within this many seconds of its publication (consumer resumed)
ACCEPTED_AFTER_PUBLISH_S = 8.0


def _free_port_pair() -> int:
    """A port p with p and p + 1 (the controller) both free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def own_kafka(settings: Settings, tmp_path: Path, session_kafka_jars):
    """A private single-node Kafka from the runner, with its own port and state folder (the jars
    are linked: see tests/dispatcher/kafka_jars.py)."""
    state = tmp_path / "vr"
    private = settings.with_(kafka_bootstrap=f"127.0.0.1:{_free_port_pair()}")
    kafka = Kafka(private.with_(state_dir=state))  # the stages keep the broker state (CA, MQTT secrets)
    link_or_fetch_jars(settings, state, session_kafka_jars)
    kafka.up(progress=lambda m: print(f"[own kafka] {m}", flush=True))
    ensure_topics(private)
    try:
        yield private, kafka
    finally:
        kafka.down(progress=lambda m: None)


def _kill_broker(kafka: Kafka) -> None:
    pid = kafka.pid()
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 15, what="broker gone")


@pytest.mark.services
@pytest.mark.slow
def test_broker_killed_mid_emergency_plans_on_time_published_on_return_nothing_cancelled(
        own_kafka, procs, unique):
    settings, kafka = own_kafka
    region = f"o{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        make_region(conn, region, n_central=2, n_cells=3, per_cell=3, stock={"medicine": 60.0, "pork": 30.0})
    sites = SiteStandIn(settings)
    try:
        dispatcher = procs.start(settings, "dispatch", "run", name="dispatcher")
        logistics = procs.start(settings, "simulate", "logistics", "--accept", "0.3", "--pick", "1.0",
                                "--deliver", "2.5", "--group", settings.group(f"logistics-{unique}"), name="logistics")
        wait_for(lambda: "dispatcher: started" in log_of(dispatcher), 60, what="dispatcher started")
        res = procs.run(settings, "emergency", "declare", "--region", region, "--demand", OUTAGE_SCENARIO,
                        "--periods", str(PERIODS), "--period-length", f"{LENGTH_S:g}s", "--reason", "outage test")
        assert res.returncode == 0, res.stdout + res.stderr
        emergency = res.stdout.strip().split("emergency ")[-1]
        with connect(settings.pg_dsn, autocommit=True) as conn:
            declared_at = wait_for(lambda: (conn.execute(
                "SELECT declared_at FROM emergencies WHERE emergency_id = %s", (emergency,)).fetchone() or [None])[0],
                30, what="emergency recorded")

            def published(period):
                return conn.execute("SELECT published_at FROM plans WHERE emergency_id = %s AND period = %s"
                                    " AND published_at IS NOT NULL", (emergency, period)).fetchone()

            wait_for(lambda: published(2), LENGTH_S + 20, what="period 2 published")
            time.sleep(1.0)  # period 2's orders accepted, picks under way: goods on the road
            _kill_broker(kafka)
            killed = time.monotonic()
            print(f"\nbroker SIGKILLed {(time.time() - declared_at.timestamp()):.1f} s after the declaration")
            back: list[float] = []
            def bring_back() -> None:
                # the killed broker's listening sockets take a moment to go
                wait_for(lambda: not any(_port_open(kafka.host, p) for p in kafka.ports()), 30, what="ports free")
                kafka.up(progress=lambda m: None)
                back.append(time.time())

            restart = threading.Thread(target=bring_back)
            restart.start()
            # period 3 starts at 2 x LENGTH_S: it must be stored while the broker is still away
            wait_for(lambda: conn.execute("SELECT 1 FROM plans WHERE emergency_id = %s AND period = 3",
                                          (emergency,)).fetchone(), 3 * LENGTH_S, what="period 3 stored")
            assert not back and published(3) is None, "the broker was back before period 3 (a fast restart?)"
            restart.join(90)
            assert back, "the broker did not come back"
            print(f"broker back after {time.monotonic() - killed:.1f} s "
                  f"({back[0] - declared_at.timestamp():.1f} s after the declaration)")
            wait_for(lambda: published(3), PUBLISHED_AFTER_RETURN_S + 5, what="period 3 published after return")
            wait_for(lambda: published(PERIODS), PERIODS * LENGTH_S + 20, what="last period published")

            def all_final():
                rows = conn.execute("SELECT status, count(*) FROM dispatch_orders WHERE emergency_id = %s"
                                    " GROUP BY status", (emergency,)).fetchall()
                counts = dict(rows)
                return counts if counts and set(counts) <= {"delivered", "failed", "cancelled", "closed"} else None
            counts = wait_for(all_final, 40, what="every order delivered or failed")
            _check(conn, emergency, declared_at, back[0], counts)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- dispatcher ---\n{log_of(dispatcher)[-4000:]}\n--- logistics ---\n"
                             f"{log_of(logistics)[-2000:]}") from None
    finally:
        sites.close()
    # both rode the outage out (the client library logs the lost connections, with tracebacks)
    assert dispatcher.poll() is None and "dispatcher: ERROR" not in log_of(dispatcher), log_of(dispatcher)[-3000:]
    assert logistics.poll() is None, log_of(logistics)[-3000:]


def _check(conn, emergency: str, declared_at, back: float, counts: dict) -> None:
    plans = conn.execute("SELECT period, created_at, published_at FROM plans WHERE emergency_id = %s ORDER BY period",
                         (emergency,)).fetchall()
    assert [p for p, _c, _pub in plans] == list(range(1, PERIODS + 1))
    late = {p: (c - (declared_at + timedelta(seconds=(p - 1) * LENGTH_S))).total_seconds() for p, c, _pub in plans}
    after_return = {p: pub.timestamp() - back for p, c, pub in plans if c.timestamp() < back}
    planned_after = [p for p, c, _pub in plans if c.timestamp() >= back]
    superseded = conn.execute("SELECT count(*) FROM dispatch_orders WHERE emergency_id = %s AND status = 'cancelled'",
                              (emergency,)).fetchone()[0]
    carrier_cancels = conn.execute(
        "SELECT count(*) FROM order_status_events e JOIN dispatch_orders o USING (order_id)"
        " WHERE o.emergency_id = %s AND e.status = 'cancelled'", (emergency,)).fetchone()[0]
    total = sum(counts.values())
    print(f"plans late (s): {', '.join(f'P{p} {s:.2f}' for p, s in late.items())}")
    print(f"published after the broker's return (s): "
          f"{', '.join(f'P{p} {s:.2f}' for p, s in after_return.items() if s >= 0)}")
    print(f"periods planned after the broker's return: {planned_after}")
    print(f"orders superseded by catch-up: {superseded} (carrier-confirmed cancels {carrier_cancels}); "
          f"orders delivered of planned: {counts.get('delivered', 0)} of {total} ({counts})")
    assert all(s < ON_TIME_S for s in late.values()), late
    assert all(s < PUBLISHED_AFTER_RETURN_S for s in after_return.values()), after_return
    assert superseded == 0 and carrier_cancels == 0
    assert counts.get("delivered", 0) > 0 and set(counts) <= {"delivered", "failed"}, counts
    no_reason = conn.execute(
        "SELECT o.order_id FROM dispatch_orders o WHERE o.emergency_id = %s AND o.status = 'failed'"
        " AND NOT EXISTS (SELECT 1 FROM order_status_events e WHERE e.order_id = o.order_id"
        "                 AND e.status = 'failed' AND coalesce(e.reason, '') <> '')", (emergency,)).fetchall()
    assert not no_reason, f"failed without a stated reason: {no_reason}"
    # the carrier resumed within seconds: each held order was accepted soon after its publication
    slow = conn.execute(
        "SELECT o.order_id, extract(epoch FROM e.at - p.published_at)::float8 FROM dispatch_orders o"
        " JOIN plans p USING (plan_id) JOIN order_status_events e ON e.order_id = o.order_id"
        " AND e.status IN ('accepted', 'failed')"
        " WHERE o.emergency_id = %s AND e.at - p.published_at > %s", (emergency, timedelta(seconds=ACCEPTED_AFTER_PUBLISH_S))
    ).fetchall()
    assert not slow, f"orders taken late by the carrier (s after publication): {slow[:5]}"
