"""Issue 10 section 3: health endpoints that say what is failing (stream worker, bridge, dispatcher),
and Bridge.stop(drain_timeout_s) honouring its argument."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from dispatcher.service import Dispatcher
from ingest.bridge import Bridge, BridgeConfig
from stream.agents import WorkerStats, failing_parts
from tests.poison.helpers import alive, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return None


def test_stream_health_names_failing_periodic_checks():
    """57 failed checks in a row and no success yet: not "ok" (it was, on main)."""
    now = time.time()
    stats = WorkerStats(started_at=now - 300)
    stats.checks_failures, stats.checks_last_error = 57, "relation \"stock_aggregates\" does not exist"
    problems = failing_parts(stats, None, 5.0, now)
    assert problems and "periodic checks (57 failure(s) in a row" in problems[0] and "stock_aggregates" in problems[0]
    stats.checks_failures, stats.checks_last_error = 0, None       # never succeeded, never said why
    assert failing_parts(stats, None, 5.0, now)
    stats.last_checks_at = now - 2                                  # a recent success: all well
    assert failing_parts(stats, None, 5.0, now) == []
    assert failing_parts(stats, now - 10, 5.0, now) == ["database writes"]
    stats.outbox_failures, stats.outbox_last_error = 3, "boom"
    assert "alert outbox (3 failure(s) in a row: boom)" in failing_parts(stats, None, 5.0, now)


def test_dispatcher_health_says_which_plan_fails(settings):
    d = Dispatcher(settings, say=lambda m: None)
    assert d.health()["status"] == "starting"
    d.last_loop_at = time.time()
    assert d.health()["status"] == "ok"
    d._failed("EM-x", "planning EM-x failed: demand file gone")
    h = d.health()
    assert h["status"] == "degraded" and h["failing"] == ["planning EM-x failed: demand file gone"]
    d.last_loop_at = time.time() - 500
    assert any("stalled" in f for f in d.health(stall_after_s=120)["failing"])


@pytest.mark.services
def test_dispatcher_and_bridge_serve_their_health(settings, procs, unique):
    dport, bport = _free_port(), _free_port()
    d = procs.start(settings, "dispatch", "run", "--health-port", str(dport), name="dispatcher")
    b = procs.start(settings, "ingest", "run", "--client-id", f"hz-{unique}", "--end-session-on-stop",
                    "--health-port", str(bport), name="bridge")
    for port, p in ((dport, d), (bport, b)):
        code, body = wait_for(lambda: (_get(port) or (None, {}))[0] == 200 and _get(port), 60,
                              f"health on port {port}", alive=lambda: alive(p))
        assert code == 200 and body["status"] == "ok" and body["failing"] == []
    assert "forwarded" in _get(bport)[1] and "plans" in _get(dport)[1]


@pytest.mark.services
def test_bridge_stop_honours_its_drain_timeout_and_health_follows(settings, unique):
    bridge = Bridge(settings, BridgeConfig(client_id=f"hz-drain-{unique}"))
    assert bridge.health()["status"] == "starting"
    bridge.start()
    try:
        assert bridge.health()["status"] == "ok"
        bridge._processing = True  # a batch that never finishes (e.g. Kafka not answering)
        t0 = time.monotonic()
        bridge.stop(drain_timeout_s=1.0, end_mqtt_session=True)
        took = time.monotonic() - t0
    finally:
        bridge._processing = False
    assert took < 10, f"stop took {took:.1f} s with a 1 s drain timeout (it was always 30 s)"
    assert bridge.health()["status"] == "degraded" and "no MQTT connection" in bridge.health()["failing"]
