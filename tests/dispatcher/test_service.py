"""The dispatcher service's own edges (in-process, real Kafka and PostgreSQL)."""
from __future__ import annotations

import pytest

from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics
from vreserve.schemas.common import utc_now

pytestmark = pytest.mark.services


def _retire(conn, emergency_id: str) -> None:
    """End and close out a hand-made emergency: its region has no supply, and a dispatcher of a later
    test in the same database would otherwise try to plan it."""
    conn.execute("UPDATE emergencies SET ended_at = now(), closed_out_at = now() WHERE emergency_id = %s",
                 (emergency_id,))


def test_an_unreadable_stored_plan_is_named_once_and_never_stops_publishing(settings, unique):
    """A plan row the dispatcher did not write (no summary) must not crash the service at start-up
    (it republishes stored plans first); it stays unpublished and is named once."""
    from dispatcher.service import Dispatcher

    ensure_topics(settings)
    plan_id = f"P-{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, %s, now(), 't', 't', 1, 60, 'wuhan')",
                     (f"E-{unique}", f"R-{unique}"))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,'optimal')",
                     (plan_id, f"E-{unique}", utc_now()))
        said: list[str] = []
        d = Dispatcher(settings, say=said.append)
        _consumer, d.producer = d._clients()
        try:
            d.publish_pending(conn)
            d.publish_pending(conn)
        finally:
            d.producer.close()
            _consumer.close()
            _retire(conn, f"E-{unique}")
        mine = [m for m in said if plan_id in m]
        assert len(mine) == 1 and "unreadable" in mine[0] and "stays unpublished" in mine[0]
        assert conn.execute("SELECT published_at FROM plans WHERE plan_id = %s", (plan_id,)).fetchone()[0] is None


def test_centre_stock_counts_supply_only_once_picked(settings, unique):
    """A supply leg accepted but not picked brings nothing into the centre (its pick may still come
    up short or fail) but counts against the budget; a picked one counts what was picked; a
    delivered one what was delivered; a delivery leg counts what it will take out."""
    from dispatcher import book

    emergency, plan = f"E-{unique}", f"P-{unique}"
    orders = [  # id, leg, origin, destination, qty, status, delivered, picked (in_transit status qty)
        ("a", "supply", "S1", "DC1", 10, "accepted", 0, None),
        ("b", "supply", "S2", "DC1", 20, "in_transit", 0, 15),
        ("c", "supply", "S3", "DC1", 30, "delivered", 28, 28),
        ("d", "supply", "S4", "DC1", 40, "failed", 0, None),
        ("e", "delivery", "DC1", "RC1", 5, "accepted", 0, None),
    ]
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, %s, now(), 't', 't', 2, 60, 'wuhan')",
                     (emergency, f"R-{unique}"))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,now(),'optimal')",
                     (plan, emergency))
        for oid, leg, origin, dest, qty, status, delivered, picked in orders:
            conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                         " material_id, qty, unit, status, delivered_qty, created_at, status_at)"
                         " VALUES (%s,%s,%s,1,%s,%s,%s,'medicine',%s,'box',%s,%s,now(),now())",
                         (f"{unique}-{oid}", plan, emergency, leg, origin, dest, qty, status, delivered))
            if picked is not None:
                conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty)"
                             " VALUES (%s,%s,'in_transit',now(),%s)", (f"{unique}-{oid}-t", f"{unique}-{oid}", picked))
        pipe = book.pipeline(conn, emergency, [], {"medicine": 2.0})
        _retire(conn, emergency)
    assert pipe.into_centre == {("DC1", "medicine"): 15 + 28}
    assert pipe.spent == pytest.approx(2.0 * (10 + 15 + 28))
    assert pipe.out_of_centre == {("DC1", "medicine"): 5} and pipe.to_rescue_centre == {("RC1", "medicine"): 5}
