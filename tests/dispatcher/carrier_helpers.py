"""A registry from the generator, live stock for it and one planned period through the real
dispatcher (in-process, real Kafka and PostgreSQL): orders as carriers receive them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from vreserve.registry_generate import generate_registry
from vreserve.registry_store import store_registry
from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics

PERIOD_S = 60.0


def plan_first_period(settings, region: str, n_sites: int = 40) -> tuple[str, datetime]:
    """Store a generated registry for ``region`` with every site holding its contracted stock,
    declare an emergency on the ``wuhan`` pack (3 periods of 60 s) and plan and publish period 1.
    Returns the emergency id and its declaration time."""
    from dispatcher import book
    from dispatcher.service import Dispatcher

    ensure_topics(settings)
    registry = generate_registry(n_sites, seed=7, region=region, id_prefix=f"{region}-")
    now = datetime.now(timezone.utc)
    declared = (now - timedelta(seconds=1)).replace(microsecond=0)  # whole ms: records carry ms
    emergency_id = f"EM-{region}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        store_registry(conn, registry)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stock_latest (site_id, material_id, qty, unit, ts, seq) VALUES (%s,%s,%s,%s,%s,1)",
                [(s.site_id, m, t.contracted_qty, registry.materials[m].unit, now)
                 for s in registry.sites.values() for m, t in s.materials.items()])
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s,%s,%s,'user:test','test',3,%s,'wuhan')",
                     (emergency_id, region, declared, PERIOD_S))
        em = book.get_emergency(conn, emergency_id)
        d = Dispatcher(settings, say=lambda _m: None)
        consumer, d.producer = d._clients()
        try:
            d.plan_and_publish(conn, em, 1, now)
            assert book.plan_published(conn, f"P-{emergency_id}-001"), "period 1 was not published"
        finally:
            d.producer.close()
            consumer.close()
    return emergency_id, declared
