"""The simulated logistics company as a carrier without Kafka: `vreserve carrier-webhooks run` POSTs
its orders to the simulator's receiver, which takes every order exactly once by id, in topic order
(a redelivery is answered and not driven again; a bad or stale signature is refused), and posts its
statuses back through the API with its carrier token, so they reach the order-status topic with
the carrier as actor and, once the dispatcher stored them, the order's status history."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest


from dispatcher.book import apply_status
from simulators.logistics import LogisticsSimulator, Timing
from simulators.logistics_webhook import WebhookConfig
from tests.api.conftest import ROOT, settings_env
from tests.dispatcher.helpers import TopicReader
from vreserve import identity as ident
from vreserve import kafka_clients, topics
from vreserve.kafka_access import ADMIN
from vreserve.carrier_webhooks import SIGNATURE_HEADER, sign
from vreserve.db import connect
from vreserve.schemas.common import utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus

pytestmark = pytest.mark.services

REGION, EM, CARRIER = "apic", "EM-apic", "carrier-sim"


def _seed(world, n: int, region: str = REGION, em: str = EM, carrier: str = CARRIER,
          prefix: str = "O-whm") -> tuple[list[DispatchOrder], str]:
    """An emergency in a region only this carrier serves, ``n`` delivery-leg orders, the carrier's token."""
    now = utc_now()
    orders = [DispatchOrder(order_id=f"{prefix}-{i}", plan_id=f"P-{em}-001", emergency_id=em, region=region, period=1,
                            leg="delivery", origin="DC-C", destination=f"RC-{i}", material="medicine",
                            qty=3.0 + i, unit="box", created_at=now) for i in range(n)]
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s,%s,%s,'user:seed','test',2,60,'wuhan')",
                     (em, region, now))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,"
                     "'optimal')", (f"P-{em}-001", em, now))
        for o in orders:
            conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin,"
                         " destination, material_id, qty, unit, created_at, status_at) VALUES"
                         " (%s,%s,%s,1,'delivery',%s,%s,'medicine',%s,'box',%s,%s)",
                         (o.order_id, o.plan_id, em, o.origin, o.destination, o.qty, now, now))
        ident.add_carrier(conn, carrier, "Simulated carrier", [region])
        token = ident.issue_token(conn, "carrier", carrier, datetime.now(timezone.utc) + timedelta(hours=1), "t")[1]
    return orders, token


def _publish(world, orders: list[DispatchOrder]) -> None:
    cancel = CancelRecord(order_id=orders[-1].order_id, emergency_id=EM, destination=orders[-1].destination,
                          reason="emergency ended", at=utc_now())
    with connect(world.settings.pg_dsn, autocommit=True) as conn:  # as the dispatcher books a cancel it publishes
        conn.execute("UPDATE dispatch_orders SET status = 'cancelled' WHERE order_id = %s", (cancel.order_id,))
    producer = kafka_clients.producer(world.settings, ADMIN, acks="all")
    for raw in [o.to_json() for o in orders] + [cancel.to_json(), orders[1].to_json()]:  # orders[1] republished
        producer.send(world.settings.topic(topics.DISPATCH_ORDERS), key=b"DC-C", value=raw)
    producer.flush(30)
    producer.close(5)


def _wait(cond, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_simulated_carrier_on_webhooks_takes_each_order_once_in_order_and_reports_through_the_api(world, settings):
    orders, token = _seed(world, 5)
    # the session's settings: the MQTT service account's password is in its state folder (the API's is a tmp one)
    sim = LogisticsSimulator(settings, Timing(accept_s=0.3, pick_s=4.0, deliver_s=4.5, jitter=0.0),
                             client_id="whm-sim", say=lambda _m: None,
                             webhook=WebhookConfig("127.0.0.1", 0, world.url, token))
    done, errors = threading.Event(), []

    def run() -> None:
        try:
            sim.run(until=done.is_set)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    _wait(lambda: errors or (sim.source is not None and sim.source.url), 30, "the receiver to register")
    assert not errors, errors
    _publish(world, orders)
    service = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "carrier-webhooks", "run", "--backoff", "0.2"],
                               cwd=ROOT, env=settings_env(world.settings), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    want_keys = [f"order:{o.order_id}" for o in orders] + [f"cancel:{orders[-1].order_id}"]
    try:
        _wait(lambda: errors or len(sim.source.log.taken) >= len(want_keys), 60, "every webhook delivery")
        assert not errors, errors
        finals = {o.order_id: ("delivered" if i < 4 else "cancelled") for i, o in enumerate(orders)}
        _wait(lambda: errors or (sim.counters.delivered + sim.counters.cancelled >= 5 and sim.sink._queue.empty()), 30,
              "the orders to be driven")
        _redeliver_and_forge(world, sim, orders[0])
    finally:
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=30)
        done.set()
        th.join(30)
    assert not errors, errors
    assert sim.source.log.taken == want_keys, err[-2000:]  # each once, in topic order
    assert sim.counters.orders == 5 and sim.counters.duplicates == 0
    assert sim.source.log.duplicates == 1 and sim.source.log.bad_signatures == 2
    assert sim.sink.refused == [] and sim.counters.delivered == 4 and sim.counters.cancelled == 1
    assert _check_history(world, orders, finals) == sim.sink.posted  # every status posted reached the topic


def _redeliver_and_forge(world, sim, order: DispatchOrder) -> None:
    """The same delivery again is answered 200 and not driven; a forged or stale one is refused."""
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        secret = conn.execute("SELECT secret FROM carrier_webhooks WHERE carrier_id = %s", (CARRIER,)).fetchone()[0]
    body = json.dumps({"event": "order", "delivery_id": "D-again", "idempotency_key": f"order:{order.order_id}",
                       "record": json.loads(order.to_json())}).encode()
    again = httpx.post(sim.source.url, content=body, headers={SIGNATURE_HEADER: sign(secret, body)})
    assert again.status_code == 200 and again.json()["result"] == "already taken"
    forged = httpx.post(sim.source.url, content=body, headers={SIGNATURE_HEADER: sign("not-the-secret", body)})
    stale = httpx.post(sim.source.url, content=body,
                       headers={SIGNATURE_HEADER: sign(secret, body, int(time.time()) - 3600)})
    assert forged.status_code == 401 and stale.status_code == 401


def _check_history(world, orders: list[DispatchOrder], finals: dict[str, str]) -> int:
    """The statuses are on the topic with the carrier as actor; stored as the dispatcher stores them,
    they are the orders' status history in the API."""
    ids = {o.order_id for o in orders}
    reader = TopicReader(world.settings, topics.ORDER_STATUS)
    try:
        reader.poll(5.0)
        statuses = [OrderStatus.from_json(v) for _k, v in reader.records if _k and _k.decode() in ids]
    finally:
        reader.close()
    assert {s.actor for s in statuses} == {f"carrier:{CARRIER}"}
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        for s in statuses:
            apply_status(conn, s)
    viewer = world.client("viewer")
    for o in orders:
        got = viewer.get(f"/api/v1/orders/{o.order_id}").json()
        history = [h["status"] for h in got["history"]]
        assert history[-1] == finals[o.order_id] and got["status"] == finals[o.order_id], got
        assert all(h["actor"] == f"carrier:{CARRIER}" for h in got["history"])
        if finals[o.order_id] == "delivered":
            assert history == ["accepted", "in_transit", "delivered"] and got["delivered_qty"] == o.qty
    return len(statuses)
