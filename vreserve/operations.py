"""Operator actions, one code path for the CLI and the HTTP API: declare / end an emergency, post an
order status for a carrier, suspend / reinstate a site, acknowledge / resolve an alert.

Every action takes the authenticated :class:`~vreserve.identity.Identity` and writes it as the
actor (never a name the caller claims). A declare is checked against the registry, the open
emergencies and the demand source *before* anything is published, so an operator learns at once
what the dispatcher would refuse. Refusals raise :class:`Refused` with a stable machine code.
The callers write the audit trail (vreserve/auditlog.py): the API once per request, the CLI once
per command (:func:`audited`).
"""
from __future__ import annotations

import asyncio
import getpass
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Sequence

from kafka.errors import AuthorizationError as KafkaAuthorizationError

from vreserve import alerts, auditlog, kafka_clients, topics
from vreserve.identity import Identity
from vreserve.kafka_access import OPERATIONS
from vreserve.quarantine import get_quarantined, mark_replayed
from vreserve.scenario import ScenarioError, load_scenario
from vreserve.schemas.alerts import Alert
from vreserve.schemas.common import SchemaError, utc_now
from vreserve.schemas.dispatch import LOGISTICS_STATUSES, DemandUpdate, ModeEvent, OrderStatus
from vreserve.settings import Settings

log = logging.getLogger(__name__)


class Refused(Exception):
    """An action that cannot be done: ``code`` is stable for programs, the message is for people."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def parse_duration(text: str) -> float:
    """'5s', '2m', '1h', '1d' or a plain number of seconds -> seconds."""
    t = text.strip().lower()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for suffix in ("ms", "s", "m", "h", "d"):
        if t.endswith(suffix):
            value = float(t[: -len(suffix)])
            break
    else:
        value, suffix = float(t), "s"
    seconds = value * units[suffix]
    if not seconds > 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def cli_identity() -> Identity:
    """The CLI's actor: the operating-system user on the server (shell access is the credential)."""
    try:
        name = getpass.getuser()
    except Exception:  # pragma: no cover - no user database in some containers
        name = "operator"
    return Identity("os-user", name, "admin")  # the same actor name as vreserve.alerts.os_actor


def now_ms() -> datetime:
    """Now, to the millisecond: what survives the JSON round trip (RFC 3339 with milliseconds)."""
    now = utc_now()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def declare_event(region: str, grid_cells: Sequence[str], demand_source: str, periods: int,
                  period_length_s: float, reason: str, demand_scale: float = 1.0,
                  event_id: str | None = None, at: datetime | None = None, who: str | None = None) -> ModeEvent:
    return ModeEvent(event_id=event_id or f"mode-{uuid.uuid4().hex}", kind="declare", region=region,
                     at=at or now_ms(), actor=who or cli_identity().actor, reason=reason,
                     grid_cells=tuple(grid_cells), periods=periods, period_length_s=period_length_s,
                     demand_source=demand_source, demand_scale=demand_scale)


def end_event(region: str, reason: str, event_id: str | None = None, who: str | None = None) -> ModeEvent:
    return ModeEvent(event_id=event_id or f"mode-{uuid.uuid4().hex}", kind="end", region=region,
                     at=now_ms(), actor=who or cli_identity().actor, reason=reason)


def check_demand_source(source: str, periods: int) -> str | None:
    """An error message if the demand file / pack cannot serve ``periods`` periods, else None."""
    try:
        scenario = load_scenario(source)
    except ScenarioError as exc:
        return f"demand source {source!r}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the event's problem, said plainly
        return f"demand source {source!r}: {type(exc).__name__}: {exc}"
    if scenario.periods < periods:
        return f"demand source {source!r} has {scenario.periods} periods, the emergency wants {periods}"
    return None


def precheck_declare(conn, region: str, grid_cells: Sequence[str], source: str, periods: int) -> None:
    """Raise Refused for what the dispatcher would reject, before anything is published."""
    if not conn.execute("SELECT 1 FROM sites WHERE region = %s LIMIT 1", (region,)).fetchone():
        raise Refused("unknown_region", f"unknown region {region!r}: no site of the registry is in it", 422)
    row = conn.execute("SELECT emergency_id FROM emergencies WHERE region = %s AND ended_at IS NULL",
                       (region,)).fetchone()
    if row:
        raise Refused("already_in_emergency", f"region {region!r} is already in emergency {row[0]}")
    if grid_cells:
        known = {r[0] for r in conn.execute(
            "SELECT DISTINCT grid_cell FROM sites WHERE region = %s AND grid_cell = ANY(%s)", (region, list(grid_cells)))}
        unknown = sorted(set(grid_cells) - known)
        if unknown:
            raise Refused("unknown_grid_cell", f"unknown grid cell(s) in {region!r}: {', '.join(unknown[:10])}", 422)
    problem = check_demand_source(source, periods)
    if problem:
        raise Refused("bad_demand_source", problem, 422)


class Publisher:
    """One idempotent Kafka producer (acks=all) for a process; thread-safe, created on first use."""

    def __init__(self, settings: Settings, principal: str = OPERATIONS) -> None:
        self.settings = settings
        self.principal = principal
        self._producer = None
        self._lock = threading.Lock()
        self._warm: set[str] = set()  # topics whose metadata the producer has

    def _get(self):
        with self._lock:
            if self._producer is None:
                self._producer = kafka_clients.producer(self.settings, self.principal, enable_idempotence=True,
                                                        linger_ms=2, max_block_ms=10000)
            return self._producer

    def send(self, topic: str, key: str, value: bytes, timeout_s: float = 30) -> None:
        """Publish and wait for the broker's acknowledgement (raises on failure)."""
        self._get().send(self.settings.topic(topic), key=key.encode(), value=value).get(timeout=timeout_s)

    async def send_async(self, topic: str, key: str, value: bytes, timeout_s: float = 30) -> None:
        """:meth:`send` for an event loop: waits for the acknowledgement without holding a thread.

        The first record to a topic is handed over in a thread (the producer may block there while
        it fetches the topic's metadata); later ones are handed over on the loop, where they only
        join the producer's batch."""

        full = self.settings.topic(topic)
        if self._producer is None or full not in self._warm:
            future = await asyncio.to_thread(lambda: self._get().send(full, key=key.encode(), value=value))
            self._warm.add(full)
        else:
            future = self._producer.send(full, key=key.encode(), value=value)
        loop = asyncio.get_running_loop()
        acked = loop.create_future()

        def settle(result=None, error=None) -> None:
            if not acked.done():
                acked.set_exception(error) if error is not None else acked.set_result(result)

        future.add_callback(lambda md: loop.call_soon_threadsafe(settle, md))
        future.add_errback(lambda exc: loop.call_soon_threadsafe(settle, None, exc))
        await asyncio.wait_for(acked, timeout_s)

    def send_raw(self, full_topic: str, key: bytes | None, value: bytes, timeout_s: float = 30):
        """Publish bytes as they are to a topic named in full; returns the record's metadata once acked."""
        return self._get().send(full_topic, key=key, value=value).get(timeout=timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(5)
                self._producer = None


def declare(conn, publisher: Publisher, who: Identity, region: str, grid_cells: Sequence[str], source: str,
            periods: int, period_length_s: float, reason: str, demand_scale: float = 1.0) -> ModeEvent:
    """Check, then publish a declare event whose actor is ``who``."""
    precheck_declare(conn, region, grid_cells, source, periods)
    event = declare_event(region, grid_cells, source, periods, period_length_s, reason, demand_scale, who=who.actor)
    publisher.send(topics.MODE, region, event.to_json())
    return event


def end(conn, publisher: Publisher, who: Identity, region: str, reason: str) -> ModeEvent:
    """Check the region is in emergency, then publish an end event whose actor is ``who``."""
    if not conn.execute("SELECT 1 FROM emergencies WHERE region = %s AND ended_at IS NULL", (region,)).fetchone():
        raise Refused("not_in_emergency", f"region {region!r} is not in emergency")
    event = end_event(region, reason, who=who.actor)
    publisher.send(topics.MODE, region, event.to_json())
    return event


def wait_verdict(conn, event_id: str, timeout_s: float) -> tuple[bool, str | None, str | None] | None:
    """(accepted, error, emergency_id) once the dispatcher recorded the event; None on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute("SELECT accepted, error, emergency_id FROM mode_events WHERE event_id = %s",
                           (event_id,)).fetchone()
        if row:
            return row[0], row[1], row[2]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def demand_update(conn, publisher: Publisher, emergency_id: str, rescue_centre: str, material: str, period: int,
                  qty: float) -> DemandUpdate:
    """Publish a rescue centre's new demand for a period of an open emergency (applied at the next plan).

    The dispatcher ignores, with a warning in the plan's message, a rescue centre or material its
    demand file does not have; here only what the database knows is checked."""
    row = conn.execute("SELECT region, periods, ended_at FROM emergencies WHERE emergency_id = %s",
                       (emergency_id,)).fetchone()
    if row is None:
        raise Refused("emergency_not_found", f"no emergency {emergency_id!r}", 404)
    if row[2] is not None:
        raise Refused("emergency_ended", f"emergency {emergency_id} has ended")
    if period > row[1]:
        raise Refused("bad_period", f"emergency {emergency_id} has {row[1]} periods, not {period}", 422)
    if not conn.execute("SELECT 1 FROM materials WHERE material_id = %s", (material,)).fetchone():
        raise Refused("unknown_material", f"unknown material {material!r}", 422)
    update = DemandUpdate(update_id=f"U-{uuid.uuid4().hex}", region=row[0], rescue_centre=rescue_centre,
                          material=material, period=period, qty=qty, at=now_ms())
    publisher.send(topics.DEMAND, rescue_centre, update.to_json())
    return update


# ------------------------------------------------------------------------------ carriers
def carrier_sees_order(conn, carrier_id: str, order_id: str) -> bool:
    """A carrier's orders are those of emergencies in the regions it serves (its routes)."""
    return conn.execute(
        "SELECT 1 FROM dispatch_orders o JOIN emergencies e USING (emergency_id)"
        " JOIN carriers c ON e.region = ANY(c.regions) WHERE o.order_id = %s AND c.carrier_id = %s",
        (order_id, carrier_id)).fetchone() is not None


def post_order_status(conn, publisher: Publisher, who: Identity, order_id: str, status: str, at: datetime | None,
                      qty: float | None, reason: str | None, status_id: str | None = None) -> OrderStatus:
    """Publish a carrier's status for one of its orders to the order-status topic, as ``who``."""
    if who.kind != "carrier":
        raise Refused("not_a_carrier", "only a carrier token may report order statuses", 403)
    if not carrier_sees_order(conn, who.name, order_id):
        raise order_not_found(order_id)
    rec = order_status_record(who, order_id, status, at, qty, reason, status_id)
    publisher.send(topics.ORDER_STATUS, order_id, rec.to_json())
    return rec


def order_not_found(order_id: str) -> Refused:
    # Same answer for "not yours" and "does not exist": a carrier learns nothing of others' orders.
    return Refused("order_not_found", f"no order {order_id!r} on your routes", 404)


def order_status_record(who: Identity, order_id: str, status: str, at: datetime | None, qty: float | None,
                        reason: str | None, status_id: str | None) -> OrderStatus:
    """The record a carrier's status becomes, checked by the topic's own rules (delivered needs qty,
    failed a reason); ``who`` is its actor. Pure: the caller has checked the order is the carrier's."""
    if who.kind != "carrier":
        raise Refused("not_a_carrier", "only a carrier token may report order statuses", 403)
    if status not in LOGISTICS_STATUSES:
        raise Refused("bad_status", f"status must be one of {', '.join(LOGISTICS_STATUSES)}", 422)
    rec = OrderStatus(order_id=order_id, status=status, at=at or now_ms(), qty=qty, reason=reason,
                      status_id=status_id or "", actor=who.actor)
    try:
        OrderStatus.from_json(rec.to_json())
    except SchemaError as exc:
        raise Refused("bad_status", str(exc), 422) from None
    return rec


def publish_alerts(conn, publisher: Publisher, alerts: list[dict]) -> int:
    """Publish stored alerts (an audit's discrepancies) to the alerts topic and mark them published.

    On a Kafka failure they stay unpublished in the table, where supervision's outbox
    (`vreserve audit consume`) picks them up: the audit itself is already recorded."""
    try:
        for a in alerts:
            record = Alert(alert_id=a["alert_id"], kind=a["kind"], severity=a["severity"], message=a["message"],
                           at=a["at"], site_id=a.get("site_id"), grid_cell=a.get("grid_cell"),
                           material_id=a.get("material_id"), details=dict(a.get("details") or {}))
            publisher.send(topics.ALERTS, record.key, record.to_json())
    except Exception as exc:  # noqa: BLE001 - left to the outbox, said in the log
        log.warning("alerts %s left to the outbox: %s", [a["alert_id"] for a in alerts], exc)
        return 0
    conn.execute("UPDATE alerts SET published_at = now() WHERE alert_id = ANY(%s)", ([a["alert_id"] for a in alerts],))
    return len(alerts)


# ------------------------------------------------------------------------------ sites, alerts
def set_site_status(conn, who: Identity, site_id: str, status: str, reason: str) -> dict:
    """Suspend (never planned) or reinstate a site; supervision's decision, so the 0041 guard allows it."""
    with conn.transaction():
        row = conn.execute("SELECT status FROM sites WHERE site_id = %s FOR UPDATE", (site_id,)).fetchone()
        if row is None:
            raise Refused("site_not_found", f"unknown site {site_id!r}", 404)
        conn.execute("SELECT set_config('vreserve.trust_writer', 'supervision', true)")
        conn.execute("UPDATE sites SET status = %s WHERE site_id = %s", (status, site_id))
    return {"site_id": site_id, "status_before": row[0], "status": status, "by": who.actor, "reason": reason}


def alert_action(conn, who: Identity, alert_id: str, action: str, note: str | None) -> dict:
    """Acknowledge (someone is on it) or resolve (closed by a person, note required) an alert,
    through the alert lifecycle (vreserve/alerts.py), with the authenticated identity as actor."""
    try:
        if action == "acknowledge":
            record = alerts.acknowledge(conn, alert_id, who.actor, note or "")
        else:
            record = alerts.resolve(conn, alert_id, who.actor, note or "")
    except alerts.AlertNotFound as exc:
        raise Refused("alert_not_found", str(exc), 404) from None
    except alerts.AlertStateError as exc:
        raise Refused("alert_state", str(exc), 409) from None
    except ValueError as exc:
        raise Refused("bad_note", str(exc), 422) from None
    return record.to_dict()


def replay_quarantined(conn, publisher: Publisher, who: Identity, quarantine_id: int) -> dict:
    """Publish a quarantined record's original key and bytes to its topic again (after a fix) and
    mark it replayed by ``who``; a record is replayed once."""

    q = get_quarantined(conn, quarantine_id)
    if q is None:
        raise Refused("quarantined_record_not_found", f"no quarantined record #{quarantine_id}", 404)
    if q.replayed_at is not None:
        raise Refused("already_replayed", f"record #{quarantine_id} was already replayed at {q.replayed_at} UTC")
    try:
        meta = publisher.send_raw(q.topic, q.key, q.raw)
    except KafkaAuthorizationError:
        raise Refused("topic_not_permitted",
                      f"this service's Kafka principal ({publisher.principal}) may not write {q.topic}: replay "
                      f"#{quarantine_id} with `vreserve quarantine replay {quarantine_id}` (administrator)",
                      403) from None
    mark_replayed(conn, quarantine_id, who.actor)
    return {"quarantine_id": quarantine_id, "topic": q.topic, "partition": meta.partition, "offset": meta.offset,
            "bytes": len(q.raw), "replayed_by": who.actor}


# ------------------------------------------------------------------------------ CLI audit trail
@contextmanager
def audited(conn, who: Identity, action: str, target: str = "", detail: dict | None = None) -> Iterator[dict]:
    """Run a CLI action and append its audit record: 'ok', or 'refused' / 'error' with the reason.

    The body may add to the yielded dict (it becomes the record's detail)."""
    info = dict(detail or {})
    try:
        yield info
    except Refused as exc:
        auditlog.append(conn, who.actor, "cli", action, "refused", exc.status, target, {**info, "code": exc.code,
                                                                                        "reason": exc.message})
        raise
    except Exception as exc:
        auditlog.append(conn, who.actor, "cli", action, "error", 500, target, {**info, "error": type(exc).__name__})
        raise
    auditlog.append(conn, who.actor, "cli", action, "ok", 200, target, info)
