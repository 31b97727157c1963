"""Operator views and raw publishing: publish a mode record, show the emergencies' status.

The actions themselves (declare, end, waiting for the verdict) live in vreserve/operations.py, shared with the HTTP API."""
from __future__ import annotations

from datetime import datetime

from dispatcher import book
from vreserve import kafka_clients, topics
from vreserve.kafka_access import OPERATIONS
from vreserve.operations import declare_event, end_event, parse_duration  # noqa: F401 - shared with the API
from vreserve.schemas.common import utc_now
from vreserve.settings import Settings


def publish_mode(settings: Settings, payload: bytes, region: str) -> None:
    """Publish one mode record keyed by region (acks=all, idempotent)."""
    producer = kafka_clients.producer(settings, OPERATIONS, enable_idempotence=True)
    try:
        producer.send(settings.topic(topics.MODE), key=region.encode(), value=payload).get(timeout=30)
    finally:
        producer.close(5)


def status_rows(conn, now: datetime | None = None) -> list[dict]:
    """Each region's mode, current period and last plan with its figures (open emergencies and
    the last ended one per region)."""
    now = now or utc_now()
    rows = book.region_status_rows(conn)
    out = []
    for (region, eid, declared, periods, plen, ended, source, period, status, objective, gap, solve_s, planned_at,
         n_orders, n_delivered) in rows:
        current = None
        if ended is None:
            current = min(periods, int((now - declared).total_seconds() // plen) + 1)
        out.append(dict(region=region, mode="normal" if ended else "emergency", emergency_id=eid,
                        declared_at=declared, ended_at=ended, periods=periods, period_length_s=plen,
                        current_period=current, demand_source=source, last_plan_period=period,
                        last_plan_status=status, objective=objective, gap=gap, solve_seconds=solve_s,
                        orders=n_orders, delivered_orders=n_delivered))
    seen = {r["region"] for r in out}
    for region in book.regions(conn):
        if region not in seen:  # never in emergency: normal mode, nothing planned
            out.append(dict(region=region, mode="normal", emergency_id="-", declared_at=None, ended_at=None,
                            periods=None, period_length_s=None, current_period=None, demand_source=None,
                            last_plan_period=None, last_plan_status=None, objective=None, gap=None,
                            solve_seconds=None, orders=0, delivered_orders=0))
    return out
