"""The dispatcher service's own edges (in-process, real Kafka and PostgreSQL)."""
from __future__ import annotations

import pytest

from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics
from vreserve.schemas.common import utc_now

pytestmark = pytest.mark.services


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
        mine = [m for m in said if plan_id in m]
        assert len(mine) == 1 and "unreadable" in mine[0] and "stays unpublished" in mine[0]
        assert conn.execute("SELECT published_at FROM plans WHERE plan_id = %s", (plan_id,)).fetchone()[0] is None
