"""Carriers without Kafka: a receiving server that fails the first tries gets every order, supersede
and cancel exactly once by id, in topic order, signed; a dead endpoint is held and listed, nothing lost."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN

from api.webhooks import SIGNATURE_HEADER, verify_signature
from api.webhooks import register as register_webhook
from tests.api.conftest import ROOT, free_port, settings_env
from vreserve import identity as ident
from vreserve import topics
from vreserve.db import connect
from vreserve.schemas.common import utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder

pytestmark = pytest.mark.services


class Receiver:
    """A carrier's webhook endpoint: answers 503 to the first ``fail_first`` requests, then 200."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first, self.calls, self.accepted, self.secret = fail_first, 0, [], ""
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                if not verify_signature(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, "")):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif receiver.calls <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.accepted.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _records(region: str, emergency_id: str, n: int) -> list[bytes]:
    now = utc_now()
    orders = [DispatchOrder(order_id=f"O-wh-{i}", plan_id=f"P-{emergency_id}-001", emergency_id=emergency_id,
                            region=region, period=1, leg="supply", origin=f"{region}-C0", destination="DC-A",
                            material="medicine", qty=5.0 + i, unit="box", created_at=now) for i in range(n)]
    out = [o.to_json() for o in orders]
    out.append(CancelRecord(order_id="O-wh-0", emergency_id=emergency_id, destination="DC-A",
                            reason="superseded by plan P-2", at=now, superseded_by=f"P-{emergency_id}-002").to_json())
    out.append(CancelRecord(order_id="O-wh-1", emergency_id=emergency_id, destination="DC-A",
                            reason="emergency ended", at=now).to_json())
    out.append(orders[2].to_json())  # republished after a restart: the same order, not a new one
    return out


def test_webhooks_in_order_exactly_once_signed_and_dead_endpoint_held(world):
    live, settings = Receiver(fail_first=2), world.settings
    with connect(settings.pg_dsn, autocommit=True) as conn:
        ident.add_carrier(conn, "carrier-wh", "Webhook carrier", ["apia"])
        ident.add_carrier(conn, "carrier-dead", "Dead carrier", ["apia"])
        token = ident.issue_token(conn, "carrier", "carrier-wh", datetime.now(timezone.utc) + timedelta(hours=1), "t")[1]
    r = httpx.post(f"{world.url}/api/v1/webhooks", json={"url": live.url}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    live.secret = r.json()["secret"]
    dead_port = free_port()  # nothing listens there
    reg = subprocess.run([sys.executable, "-m", "vreserve.cli", "carrier-webhooks", "register", "carrier-dead",
                          f"http://127.0.0.1:{dead_port}/hook"], cwd=ROOT, env=settings_env(settings),
                         capture_output=True, text=True, timeout=60)
    assert reg.returncode == 0, reg.stderr
    records = _records("apia", world.emergencies["apia"], 5)
    producer = kafka_clients.producer(settings, ADMIN, acks="all")
    for raw in records:
        producer.send(settings.topic(topics.DISPATCH_ORDERS), key=b"DC-A", value=raw)
    producer.flush(30)
    producer.close(5)
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "carrier-webhooks", "run", "--backoff", "0.1",
                             "--max-attempts", "3"], cwd=ROOT, env=settings_env(settings),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        want = ["order:O-wh-0", "order:O-wh-1", "order:O-wh-2", "order:O-wh-3", "order:O-wh-4",
                "supersede:O-wh-0", "cancel:O-wh-1"]
        while time.monotonic() < deadline and (len(live.accepted) < len(want) or not _held(world)):
            time.sleep(0.3)
        time.sleep(1.0)  # a duplicate, if any, would arrive now
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        live.close()
    keys = [a["idempotency_key"] for a in live.accepted]
    assert keys == want, err[-2000:]
    assert live.bad_signatures == 0 and live.calls == len(want) + 2
    assert live.accepted[5]["record"]["superseded_by"].endswith("-002")
    assert live.accepted[0]["record"]["order_id"] == "O-wh-0" and live.accepted[0]["record"]["unit"] == "box"
    held = _held(world)
    assert [h["carrier_id"] for h in held] == ["carrier-dead"]
    assert held[0]["waiting"] == len(want) and "3 failed attempts" in held[0]["held_reason"]
    listing = subprocess.run([sys.executable, "-m", "vreserve.cli", "carrier-webhooks", "held"], cwd=ROOT,
                             env=settings_env(settings), capture_output=True, text=True, timeout=60)
    assert "carrier-dead" in listing.stdout and "7 record(s) waiting" in listing.stdout
    assert not verify_signature(live.secret, b"{}", "t=1,v1=00")  # stale timestamp: a replay is refused


def _held(world) -> list[dict]:
    return world.client("operator").get("/api/v1/webhooks/held").json()["items"]


def test_webhook_orders_carry_what_a_carrier_needs(world, unique):
    """Orders planned by the real dispatcher reach a webhook as the topic's v2 record: both ends with
    name, address, coordinates and contact, windows, accept-by, handling, weight and volume."""
    from tests.dispatcher.carrier_helpers import plan_first_period
    from tests.dispatcher.test_carrier_details import assert_carrier_fields

    region = f"wh{unique[-8:]}".lower()
    receiver, settings = Receiver(fail_first=0), world.settings
    with connect(settings.pg_dsn, autocommit=True) as conn:
        ident.add_carrier(conn, f"carrier-{region}", "Carrier of the planned region", [region])
        receiver.secret = register_webhook(conn, f"carrier-{region}", receiver.url, "test")
    emergency_id, declared = plan_first_period(settings, region)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        planned = conn.execute("SELECT count(*) FROM dispatch_orders WHERE emergency_id = %s",
                               (emergency_id,)).fetchone()[0]
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "carrier-webhooks", "run"], cwd=ROOT,
                            env=settings_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.accepted) < planned:
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        receiver.close()
    assert planned > 0 and len(receiver.accepted) == planned, err[-2000:]
    for delivery in receiver.accepted:
        assert delivery["event"] == "order"
        assert_carrier_fields(delivery["record"], declared)
