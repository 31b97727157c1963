"""The order-status contract as a carrier nobody here wrote would use it (issue 11, part 2).

Over-delivery is refused with a reason; delivered / failed / cancelled are final; a carrier's
``cancelled`` only confirms a cancel the dispatcher sent; unknown fields are kept, not refused;
every refusal is published on ``order-status.errors`` with the reason.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from dispatcher import book
from vreserve import topics
from vreserve.db import connect
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import OrderStatus


def _status(order_id: str, status: str, qty=None, reason=None, sid=None, **extra) -> OrderStatus:
    return OrderStatus(order_id=order_id, status=status, at=utc_now(), qty=qty, reason=reason,
                       status_id=sid or f"{order_id}-{status}-{qty}", extra=extra)


def test_refusal_rules_are_pure_and_say_why():
    s = lambda st, qty=None: _status("O-1", st, qty, "r" if st == "failed" else None)  # noqa: E731
    assert book.refusal("in_transit", 52, "box", None, 52, s("delivered", 60)) == \
        "delivered 60 box is more than the 52 box picked"
    assert book.refusal("accepted", 52, "box", None, None, s("delivered", 53)) == \
        "delivered 53 box is more than the 52 box ordered"
    assert book.refusal("accepted", 52, "box", None, None, s("in_transit", 70)).startswith("picked 70 box is more")
    assert book.refusal("in_transit", 52, "box", None, 40, s("delivered", 40)) is None
    assert book.refusal("in_transit", 52, "box", None, 40, s("delivered", 12)) is None  # short: allowed, with reason
    assert "was not cancelled by the dispatcher" in book.refusal("accepted", 5, "box", None, None, s("cancelled"))
    assert book.refusal("cancelled", 5, "box", None, None, s("cancelled")) is None
    assert "already failed (a final status)" in book.refusal("failed", 5, "box", "failed", None, s("delivered", 5))
    assert "already cancelled" in book.refusal("cancelled", 5, "box", "cancelled", None, s("in_transit", 5))


def test_unknown_fields_are_kept_known_ones_stay_strict():
    raw = {"v": 1, "status_id": "S-1", "order_id": "O-1", "status": "accepted", "at": "2026-11-30T10:00:00Z",
           "qty": None, "reason": None, "vehicle": "truck 7", "eta": {"minutes": 12}}
    st = OrderStatus.from_json(json.dumps(raw))
    assert st.extra == {"vehicle": "truck 7", "eta": {"minutes": 12}}
    assert json.loads(st.to_json())["vehicle"] == "truck 7"
    with pytest.raises(SchemaError, match="qty must be a number"):
        OrderStatus.from_json(json.dumps({**raw, "qty": "12"}))
    with pytest.raises(SchemaError, match="unsupported order status version"):
        OrderStatus.from_json(json.dumps({**raw, "v": 2}))
    with pytest.raises(SchemaError, match="unknown fields"):
        OrderStatus.from_json(json.dumps({**raw, **{f"x{i}": i for i in range(40)}}))


def _order(conn, unique: str, qty: float = 52.0) -> str:
    emergency, plan, oid = f"E-{unique}", f"P-{unique}", f"O-{unique}"
    conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                 " period_length_s, demand_source) VALUES (%s, %s, now(), 't', 't', 2, 60, 'wuhan')",
                 (emergency, f"R-{unique}"))
    conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,now(),'optimal')",
                 (plan, emergency))
    conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                 " material_id, qty, unit, created_at, status_at) VALUES (%s,%s,%s,1,'supply','S1','DC1','medicine',"
                 " %s,'box',now(),now())", (oid, plan, emergency, qty))
    return oid


@pytest.mark.services
def test_over_delivery_and_statuses_after_a_final_one_are_refused_not_stored(settings, unique):
    with connect(settings.pg_dsn, autocommit=True) as conn:
        for m in (("medicine", "Medicine", "box", "medical", True),):
            conn.execute("INSERT INTO materials (material_id, name, unit, class, consumable) VALUES (%s,%s,%s,%s,%s)"
                         " ON CONFLICT DO NOTHING", m)
        oid = _order(conn, unique)
        assert book.apply_status(conn, _status(oid, "accepted", vehicle="truck 7")) == "applied"
        assert book.apply_status(conn, _status(oid, "in_transit", 52)) == "applied"
        with pytest.raises(book.StatusRefused, match="delivered 60 box is more than the 52 box picked"):
            book.apply_status(conn, _status(oid, "delivered", 60))
        row = conn.execute("SELECT status, delivered_qty FROM dispatch_orders WHERE order_id = %s", (oid,)).fetchone()
        assert row[0] == "in_transit" and not row[1], "over-delivery stored"
        assert conn.execute("SELECT extra FROM order_status_events WHERE order_id = %s AND status = 'accepted'",
                            (oid,)).fetchone()[0] == {"vehicle": "truck 7"}

        # a carrier's cancel of an order the dispatcher never cancelled: refused; the order stays on
        other = _order(conn, unique + "b")
        book.apply_status(conn, _status(other, "accepted"))
        with pytest.raises(book.StatusRefused, match="not cancelled by the dispatcher"):
            book.apply_status(conn, _status(other, "cancelled"))
        # failed is final: a later delivered does not override it
        assert book.apply_status(conn, _status(other, "failed", reason="no vehicle")) == "applied"
        with pytest.raises(book.StatusRefused, match="already failed"):
            book.apply_status(conn, _status(other, "delivered", 5))
        assert conn.execute("SELECT status FROM dispatch_orders WHERE order_id = %s", (other,)).fetchone()[0] == "failed"


@pytest.mark.services
@pytest.mark.slow
def test_refused_statuses_are_published_on_the_errors_topic_with_the_reason(settings, unique):
    from kafka import TopicPartition
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from dispatcher.service import Dispatcher

    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO materials (material_id, name, unit, class, consumable) VALUES"
                     " ('medicine','Medicine','box','medical',true) ON CONFLICT DO NOTHING")
        oid = _order(conn, unique)
    producer = kafka_clients.producer(settings, ADMIN, acks="all")
    st = settings.topic(topics.ORDER_STATUS)
    for rec in (_status(oid, "in_transit", 52), _status(oid, "delivered", 60, sid=f"S-{unique}-over")):
        producer.send(st, key=oid.encode(), value=rec.to_json()).get(30)
    producer.send(st, key=b"x", value=b'{"v":1,"status":"delivered"').get(30)
    producer.send(st, key=b"O-nope", value=_status(f"O-nope-{unique}", "accepted").to_json()).get(30)
    producer.close()

    d = Dispatcher(settings, say=lambda m: None)
    errors: list[dict] = []
    consumer = kafka_clients.consumer(settings, ADMIN, group_id=None, enable_auto_commit=False)
    et = settings.topic(topics.ORDER_STATUS_ERRORS)
    parts = [TopicPartition(et, p) for p in sorted(consumer.partitions_for_topic(et))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    deadline = time.monotonic() + 60

    def found() -> bool:
        for recs in consumer.poll(timeout_ms=100).values():
            errors.extend(json.loads(r.value) for r in recs)
        kinds = {("over" if e.get("status_id") == f"S-{unique}-over" else
                  "unknown" if unique in e["raw"] and e["error"].startswith("unknown order") else
                  "malformed" if e["error"].startswith("malformed") else "other") for e in errors}
        return {"over", "unknown", "malformed"} <= kinds or time.monotonic() > deadline

    t = threading.Thread(target=d.run, kwargs={"until": found})
    t.start()
    t.join(90)
    consumer.close()
    assert not t.is_alive()
    over = [e for e in errors if e.get("status_id") == f"S-{unique}-over"]
    assert over and over[0]["error"] == "delivered 60 box is more than the 52 box picked" and over[0]["order_id"] == oid
    assert any(e["error"].startswith("unknown order id") and unique in e["raw"] for e in errors)
    assert any(e["error"].startswith("malformed order status") for e in errors)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT status FROM dispatch_orders WHERE order_id = %s", (oid,)).fetchone()[0] == "in_transit"
