"""Kafka 4's own console producer / consumer, as a carrier would use them (issue 11): the runner
fetches them with the broker (deploy/pom.xml) and `vreserve kafka ...` runs them on project topics.
A status typed into the console producer reaches the dispatcher's topic and reads back."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.dispatcher.conftest import ROOT, settings_env
from tests.dispatcher.kafka_jars import link_or_fetch_jars, session_kafka_jars  # noqa: F401 (fixture)
from vreserve.schemas.dispatch import OrderStatus

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_console_producer_and_consumer_round_trip_an_order_status(settings, tmp_path, session_kafka_jars, unique):
    state = tmp_path / "vr"
    link_or_fetch_jars(settings, state, session_kafka_jars)
    env = {**settings_env(settings), "VR_STATE_DIR": str(state)}
    vreserve = [sys.executable, "-m", "vreserve.cli", "kafka"]
    status = {"v": 1, "status_id": f"S-{unique}", "order_id": f"O-{unique}", "status": "accepted",
              "at": "2026-11-30T10:00:00Z", "vehicle": "truck 7"}
    line = f"O-{unique}|{json.dumps(status)}\n"
    prod = subprocess.run(vreserve + ["console-producer", "order-status", "--property", "parse.key=true",
                                      "--property", "key.separator=|"],
                          input=line, text=True, capture_output=True, cwd=ROOT, env=env, timeout=90)
    assert prod.returncode == 0, prod.stderr[-3000:]
    cons = subprocess.run(vreserve + ["console-consumer", "order-status", "--from-beginning", "--timeout-ms", "8000",
                                      "--property", "print.key=true", "--property", "key.separator=|"],
                          text=True, capture_output=True, cwd=ROOT, env=env, timeout=90)
    mine = [ln for ln in cons.stdout.splitlines() if ln.startswith(f"O-{unique}|")]
    assert mine, (cons.stdout[-2000:], cons.stderr[-2000:])
    # what the carrier typed is a valid v1 status (its own `vehicle` field kept, not refused)
    parsed = OrderStatus.from_json(mine[0].split("|", 1)[1])
    assert parsed.order_id == f"O-{unique}" and parsed.extra == {"vehicle": "truck 7"}
    assert os.path.isdir(state / "kafka" / "libs")
