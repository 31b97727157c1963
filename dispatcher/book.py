"""The dispatcher's order book in PostgreSQL: emergencies, mode events, plans, orders, cancels,
statuses, and the supply snapshot's rows.

Every SQL statement of the dispatcher is here, as thin adapters; the decisions are in
:mod:`dispatcher.snapshot`, :mod:`dispatcher.live`, :mod:`dispatcher.planning` and :mod:`dispatcher.mode`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from psycopg.types.json import Jsonb

from vreserve.emergencies import COLUMNS, Emergency, emergency_from_row, get_emergency  # noqa: F401 (re-exported)
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus, PlanSummary

log = logging.getLogger("vreserve.dispatcher")

#: The quantity a carrier reported picked for order ``o`` (its first ``in_transit`` status with a qty).
PICKED_QTY_SQL = ("(SELECT e.qty FROM order_status_events e WHERE e.order_id = o.order_id"
                  " AND e.status = 'in_transit' AND e.qty IS NOT NULL ORDER BY e.at LIMIT 1)")

SNAPSHOT_SQL = """
WITH committed AS (
    SELECT site_id, material_id, sum(committed_qty)::float8 AS committed
    FROM contracts
    WHERE valid_from <= %(day)s AND valid_to >= %(day)s
    GROUP BY site_id, material_id
), reporting AS (
    SELECT c.site_id, c.material_id, min(t.reporting_interval_s)::float8 AS interval_s
    FROM contracts c JOIN contract_site_terms t ON t.contract_id = c.contract_id
    WHERE c.valid_from <= %(day)s AND c.valid_to >= %(day)s
    GROUP BY c.site_id, c.material_id
), distrusted AS (
    SELECT DISTINCT ON (site_id, material_id) site_id, material_id, alert_id
    FROM alerts
    WHERE resolved_at IS NULL AND severity = 'critical'
      AND kind IN ('pick_not_reflected', 'unexplained_change', 'above_capacity')
    ORDER BY site_id, material_id, at DESC
), reserved AS (
    SELECT o.origin AS site_id, o.material_id,
           sum(CASE WHEN o.status IN ('in_transit', 'delivered') THEN coalesce(""" + PICKED_QTY_SQL + """, o.qty)
                    ELSE o.qty END)::float8 AS reserved
    FROM dispatch_orders o
    LEFT JOIN stock_latest sl ON sl.site_id = o.origin AND sl.material_id = o.material_id
    WHERE o.leg = 'supply'
      AND NOT (o.order_id = ANY(%(exclude)s))
      AND (o.status IN ('open', 'accepted')
           OR (o.status IN ('in_transit', 'delivered')
               AND (o.picked_at IS NULL OR sl.ts IS NULL
                    OR sl.ts <= o.picked_at + make_interval(secs => %(reflect)s))))
    GROUP BY o.origin, o.material_id
)
SELECT s.site_id, s.grid_cell, s.tier, s.lat, s.lon, s.trust,
       sl.material_id, sl.unit, sl.qty::float8, sl.ts,
       c.committed, coalesce(sm.contracted_qty, 0)::float8, coalesce(r.reserved, 0),
       coalesce(rp.interval_s, %(default_interval)s), d.alert_id
FROM sites s
JOIN stock_latest sl ON sl.site_id = s.site_id
JOIN committed c ON c.site_id = s.site_id AND c.material_id = sl.material_id
LEFT JOIN site_materials sm ON sm.site_id = s.site_id AND sm.material_id = sl.material_id
LEFT JOIN reserved r ON r.site_id = s.site_id AND r.material_id = sl.material_id
LEFT JOIN reporting rp ON rp.site_id = s.site_id AND rp.material_id = sl.material_id
LEFT JOIN distrusted d ON d.site_id = s.site_id AND d.material_id = sl.material_id
WHERE s.region = %(region)s
  AND s.status = 'active'
  AND (%(all_cells)s OR s.grid_cell = ANY(%(cells)s))
  AND (%(all_materials)s OR sl.material_id = ANY(%(materials)s))
ORDER BY s.site_id, sl.material_id
"""


def supply_rows(conn, region: str, at: datetime, cells: Sequence[str], materials: Sequence[str],
                exclude_orders: Iterable[str], reflect_s: float, default_interval_s: float) -> list[tuple]:
    """The region's (site, material) rows behind the supply rule (``dispatcher.snapshot``); empty
    ``cells`` / ``materials`` mean all. Read-only; runs in the caller's transaction."""
    return conn.execute(
        SNAPSHOT_SQL,
        {
            "day": at.date(),
            "region": region,
            "all_cells": not cells,
            "cells": list(cells),
            "all_materials": not materials,
            "materials": list(materials),
            "exclude": list(exclude_orders),
            "reflect": reflect_s,
            "default_interval": default_interval_s,
        },
    ).fetchall()


def region_known(conn, region: str) -> bool:
    """Whether any site is registered in ``region`` (a demand update for another region is refused)."""
    return conn.execute("SELECT 1 FROM sites WHERE region = %s LIMIT 1", (region,)).fetchone() is not None


@dataclass(frozen=True)
class Pipeline:
    """What earlier orders of the emergency moved (or will move), in units of each material."""

    #: (distribution centre, material) -> units in from supply orders: delivered, or picked and on
    #: the road (a supply order not yet picked brings nothing until it is)
    into_centre: Mapping[tuple[str, str], float]
    #: (distribution centre, material) -> units out by delivery orders
    out_of_centre: Mapping[tuple[str, str], float]
    #: (rescue centre, material) -> units delivered or on the way
    to_rescue_centre: Mapping[tuple[str, str], float]
    #: currency units already committed to supply orders (for the budget)
    spent: float = 0.0


def material_units(conn, material_ids: Sequence[str]) -> dict[str, str]:
    """material -> the catalogue's unit (what sites report and orders count in)."""
    return dict(conn.execute("SELECT material_id, unit FROM materials WHERE material_id = ANY(%s)",
                             (list(material_ids),)).fetchall())


def registry_details(conn, site_ids: Sequence[str], material_ids: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """What the registry states about sites and materials for a carrier (name, address, coordinates,
    contact; handling, weight and volume per unit): rows for :mod:`dispatcher.carrier_details`."""
    sites = conn.execute("SELECT site_id, name, address, lat, lon, contact_name, contact_phone, contact_email"
                         " FROM sites WHERE site_id = ANY(%s)", (list(site_ids),)).fetchall()
    materials = conn.execute("SELECT material_id, name, handling, weight_kg_per_unit, volume_m3_per_unit"
                             " FROM materials WHERE material_id = ANY(%s)", (list(material_ids),)).fetchall()
    return sites, materials


def open_emergencies(conn) -> list[Emergency]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM emergencies WHERE ended_at IS NULL ORDER BY declared_at").fetchall()
    return [emergency_from_row(r) for r in rows]


def ended_not_closed_out(conn) -> list[Emergency]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM emergencies WHERE ended_at IS NOT NULL AND closed_out_at IS NULL"
    ).fetchall()
    return [emergency_from_row(r) for r in rows]


def planned_periods(conn, emergency_id: str) -> set[int]:
    return {r[0] for r in conn.execute("SELECT period FROM plans WHERE emergency_id = %s", (emergency_id,))}


def open_orders(conn, emergency_id: str, published_before: datetime | None) -> list[tuple[str, str]]:
    """(order_id, destination) of the orders a new plan supersedes: still ``open`` (no logistics
    system said it took them) although they were published before ``published_before``.

    ``None`` supersedes nothing: the dispatcher could not read every status already on the topic
    (the broker is away or slow), so it does not know which orders carriers have accepted, and
    cancelling those would pull goods off the road. An order not yet published (the outbox is
    waiting for the broker) or published after ``published_before`` (carriers have not had time
    to accept it) is not superseded either. Orders kept count as committed in the next plan
    (:func:`pipeline`, the snapshot's reservations), so the plan covers only the remainder.
    """
    if published_before is None:
        return []
    return conn.execute(
        "SELECT o.order_id, o.destination FROM dispatch_orders o JOIN plans p USING (plan_id)"
        " WHERE o.emergency_id = %s AND o.status = 'open' AND p.published_at IS NOT NULL"
        "   AND p.published_at <= %s ORDER BY o.order_id", (emergency_id, published_before)
    ).fetchall()


def pipeline(conn, emergency_id: str, exclude: Sequence[str], price: dict[str, float]) -> Pipeline:
    """What the emergency's orders moved or will move (see :class:`Pipeline`)."""
    # Quantities from the logistics statuses, not the orders: a delivered order counts what was
    # delivered, one in transit what the carrier reported picked (a short pick carries less), one
    # not picked yet (or whose carrier gave no figure) what was ordered. A supply leg not picked
    # yet brings nothing into the centre's stock (``moved``): its pick may still come up short or
    # fail, and a delivery planned on it would then hand out goods the centre never got. It still
    # counts against the budget and its site's stock stays reserved, so it is not ordered twice
    # from the same stock.
    rows = conn.execute(
        "SELECT o.leg, o.origin, o.destination, o.material_id,"
        "  sum(coalesce(m.moved, o.qty))::float8, sum(coalesce(m.moved, 0))::float8"
        " FROM dispatch_orders o,"
        " LATERAL (SELECT CASE WHEN o.status = 'delivered' THEN o.delivered_qty"
        "                      WHEN o.status = 'in_transit' THEN coalesce(" + PICKED_QTY_SQL + ", o.qty)"
        "                 END AS moved) m"
        " WHERE o.emergency_id = %s AND o.status NOT IN ('failed', 'cancelled', 'closed')"
        "   AND NOT (o.order_id = ANY(%s))"
        " GROUP BY o.leg, o.origin, o.destination, o.material_id",
        (emergency_id, list(exclude)),
    ).fetchall()
    into, out, to_rc = {}, {}, {}
    spent = 0.0
    for leg, origin, dest, mat, qty, moved in rows:
        if leg == "supply":
            into[(dest, mat)] = into.get((dest, mat), 0.0) + moved
            spent += qty * price.get(mat, 0.0)
        else:
            out[(origin, mat)] = out.get((origin, mat), 0.0) + qty
            to_rc[(dest, mat)] = to_rc.get((dest, mat), 0.0) + qty
    return Pipeline(into, out, to_rc, spent)


def persist_plan(
    conn,
    summary: PlanSummary,
    orders: Sequence[DispatchOrder],
    supersede: Sequence[tuple[str, str]],
    now: datetime,
) -> bool:
    """Store a plan with its orders and the cancel records of what it supersedes, atomically.

    Returns False (and stores nothing) when the period already has a plan: a restarted or second
    dispatcher then republishes that stored plan instead of making another.
    """
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO plans (plan_id, emergency_id, period, created_at, status, objective, bound, gap,"
            " solve_seconds, summary, region) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT DO NOTHING RETURNING plan_id",
            (summary.plan_id, summary.emergency_id, summary.period, summary.created_at, summary.status,
             summary.objective, summary.bound, summary.gap, summary.solve_seconds,
             Jsonb(summary.to_payload()), summary.region),
        ).fetchone()
        if not inserted:
            return False
        ids = [oid for oid, _ in supersede]
        cancelled = conn.execute(
            "UPDATE dispatch_orders SET status = 'cancelled', superseded_by = %s, status_at = %s"
            " WHERE order_id = ANY(%s) AND status = 'open' RETURNING order_id, destination",
            (summary.plan_id, now, ids),
        ).fetchall()
        for oid, dest in cancelled:
            conn.execute(
                "INSERT INTO order_cancellations (order_id, emergency_id, destination, reason, superseded_by, at)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (oid, summary.emergency_id, dest, f"superseded by plan {summary.plan_id}", summary.plan_id, now),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                " material_id, qty, unit, created_at, status_at, region, carrier_details)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                [(o.order_id, o.plan_id, o.emergency_id, o.period, o.leg, o.origin, o.destination, o.material,
                  o.qty, o.unit, o.created_at, o.created_at, o.region,
                  None if o.details is None else Jsonb(o.details.model_dump(mode="json"))) for o in orders],
            )
    return True


def close_out(conn, emergency: Emergency, now: datetime) -> int:
    """Back to normal: orders no logistics system took are closed, each with a cancel record."""
    with conn.transaction():
        rows = conn.execute(
            "UPDATE dispatch_orders SET status = 'closed', status_at = %s"
            " WHERE emergency_id = %s AND status = 'open' RETURNING order_id, destination",
            (now, emergency.emergency_id),
        ).fetchall()
        for oid, dest in rows:
            conn.execute(
                "INSERT INTO order_cancellations (order_id, emergency_id, destination, reason, at)"
                " VALUES (%s,%s,%s,'emergency ended',%s) ON CONFLICT DO NOTHING",
                (oid, emergency.emergency_id, dest, now),
            )
    return len(rows)


def unpublished_plans(conn, regions: Sequence[str] | None = None) -> list[str]:
    """Stored plans not yet published, oldest first; only those of ``regions`` when given."""
    return [r[0] for r in conn.execute(
        "SELECT plan_id FROM plans WHERE published_at IS NULL AND (%(all)s OR region = ANY(%(regions)s))"
        " ORDER BY created_at, period", {"all": regions is None, "regions": list(regions or ())})]


def plan_published(conn, plan_id: str) -> bool:
    row = conn.execute("SELECT published_at IS NOT NULL FROM plans WHERE plan_id = %s", (plan_id,)).fetchone()
    return bool(row and row[0])


def plan_records(conn, plan_id: str) -> tuple[PlanSummary, list[DispatchOrder]]:
    summary = PlanSummary.from_json(_json_text(conn.execute(
        "SELECT summary FROM plans WHERE plan_id = %s", (plan_id,)).fetchone()[0]))
    rows = conn.execute(
        "SELECT order_id, plan_id, emergency_id, region, period, leg, origin, destination, material_id,"
        " qty::float8, unit, created_at, carrier_details FROM dispatch_orders WHERE plan_id = %s"
        # an order closed before its plan went out (the emergency ended while the broker was
        # away) is not published; its cancel record still is (harmless for an unknown order)
        "   AND status NOT IN ('cancelled', 'closed') ORDER BY order_id", (plan_id,)
    ).fetchall()
    return summary, [DispatchOrder(*r) for r in rows]


def unpublished_cancels(conn, regions: Sequence[str] | None = None) -> list[CancelRecord]:
    """Cancel records not yet published; only those of ``regions``' emergencies when given."""
    rows = conn.execute(
        "SELECT c.order_id, c.emergency_id, c.destination, c.reason, c.at, c.superseded_by"
        " FROM order_cancellations c JOIN emergencies e USING (emergency_id)"
        " WHERE c.published_at IS NULL AND (%(all)s OR e.region = ANY(%(regions)s)) ORDER BY c.at, c.order_id",
        {"all": regions is None, "regions": list(regions or ())}
    ).fetchall()
    return [CancelRecord(*r) for r in rows]


def mark_published(conn, plan_id: str | None, cancel_ids: Iterable[str], now: datetime) -> None:
    with conn.transaction():
        if plan_id:
            conn.execute("UPDATE plans SET published_at = %s WHERE plan_id = %s AND published_at IS NULL",
                         (now, plan_id))
        ids = list(cancel_ids)
        if ids:
            conn.execute("UPDATE order_cancellations SET published_at = %s WHERE order_id = ANY(%s)"
                         " AND published_at IS NULL", (now, ids))


def mark_closed_out(conn, emergency_id: str, now: datetime) -> None:
    conn.execute("UPDATE emergencies SET closed_out_at = %s WHERE emergency_id = %s", (now, emergency_id))


_RANK = {"open": 0, "accepted": 1, "in_transit": 2, "delivered": 3, "failed": 3, "cancelled": 3, "closed": 3}
#: Statuses after which a carrier may report nothing else about the order.
CARRIER_FINAL_STATUSES = ("delivered", "failed", "cancelled")
#: Rounding slack when comparing a carrier's quantity with the ordered / picked one.
QTY_SLACK = 1e-6


class StatusRefused(Exception):
    """A logistics status that breaks the contract; ``str(exc)`` is the reason the carrier reads."""


def refusal(current: str, ordered: float, unit: str, final: str | None, picked: float | None,
            status: OrderStatus) -> str | None:
    """Why ``status`` cannot be applied to an order in ``current`` state (None: it can). Pure.

    * after a final status the carrier reported (delivered, failed, cancelled) nothing else is
      taken: the first final word stands (settlement pays from it);
    * ``cancelled`` only confirms a cancel the dispatcher sent; a carrier that cannot carry out an
      order reports ``failed`` with a reason;
    * a picked quantity above the ordered one, or a delivered quantity above the picked one (the
      ordered one when no pick figure was given), is refused, not capped: the carrier's books and
      ours would otherwise disagree silently.
    """
    new = status.status
    if final is not None:
        return f"order {status.order_id} is already {final} (a final status); {new} refused"
    if new == "cancelled" and current not in ("cancelled", "closed"):
        return (f"order {status.order_id} was not cancelled by the dispatcher (it is {current}); a carrier "
                "that cannot carry it out reports failed with a reason")
    if new == "in_transit" and status.qty is not None and status.qty > ordered + QTY_SLACK:
        return f"picked {status.qty:g} {unit} is more than the {ordered:g} {unit} ordered"
    if new == "delivered":
        limit, what = (picked, "picked") if picked is not None else (ordered, "ordered")
        if status.qty is not None and status.qty > limit + QTY_SLACK:
            return f"delivered {status.qty:g} {unit} is more than the {limit:g} {unit} {what}"
    return None


def apply_status(conn, status: OrderStatus) -> str:
    """Record a logistics status once and move the order's status forward.

    Returns ``"applied"``, ``"duplicate"`` (status id seen before) or ``"unknown order"``; raises
    :class:`StatusRefused` (nothing stored) for a status the contract refuses (see :func:`refusal`).
    An order the dispatcher cancelled or closed that logistics nonetheless moved (it had picked
    the goods before the cancel reached it) takes the physical status: the truth on the road wins.
    """
    with conn.transaction():
        row = conn.execute("SELECT status, qty::float8, unit FROM dispatch_orders WHERE order_id = %s FOR UPDATE",
                           (status.order_id,)).fetchone()
        if row is None:
            return "unknown order"
        if conn.execute("SELECT 1 FROM order_status_events WHERE status_id = %s", (status.status_id,)).fetchone():
            return "duplicate"
        current, ordered, unit = row
        final = conn.execute(
            "SELECT status FROM order_status_events WHERE order_id = %s AND status = ANY(%s) ORDER BY at LIMIT 1",
            (status.order_id, list(CARRIER_FINAL_STATUSES))).fetchone()
        picked = conn.execute(
            "SELECT qty::float8 FROM order_status_events WHERE order_id = %s AND status = 'in_transit'"
            " AND qty IS NOT NULL ORDER BY at DESC LIMIT 1", (status.order_id,)).fetchone()
        why = refusal(current, ordered, unit, final[0] if final else None, picked[0] if picked else None, status)
        if why:
            raise StatusRefused(why)
        conn.execute(
            "INSERT INTO order_status_events (status_id, order_id, status, at, qty, reason, extra, actor)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (status.status_id, status.order_id, status.status, status.at, status.qty, status.reason,
             Jsonb(status.extra) if status.extra else None, status.actor),
        )
        new = status.status
        if current in ("cancelled", "closed"):
            move = new in ("in_transit", "delivered", "failed")
            if move and new != "failed":
                log.warning("order %s was %s but logistics reports %s: the cancel came too late; "
                            "the goods count as moved", status.order_id, current, new)
        else:
            move = _RANK[new] > _RANK[current]
        if move:
            conn.execute(
                "UPDATE dispatch_orders SET status = %s, status_at = %s,"
                " delivered_qty = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_qty END,"
                " picked_at = CASE WHEN %s IN ('in_transit', 'delivered') THEN coalesce(picked_at, %s)"
                "                  ELSE picked_at END"
                " WHERE order_id = %s",
                (new, status.at, new, status.qty or 0, new, status.at, status.order_id),
            )
    return "applied"


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def emergency_regions(conn) -> list[str]:
    """Every region that has (or had) an emergency: the candidates for a dispatcher's ownership."""
    return [r[0] for r in conn.execute("SELECT DISTINCT region FROM emergencies ORDER BY region")]


#: Advisory-lock namespace of the dispatchers' slots (``claim_dispatcher_slot``).
DISPATCHER_SLOT_LOCK = "vreserve.dispatcher_slot"


def claim_dispatcher_slot(conn, max_slots: int = 256) -> int:
    """The lowest dispatcher slot no live dispatcher holds, held for this session's lifetime.

    A session-level advisory lock: released by PostgreSQL the moment its holder's connection
    ends, a SIGKILL included, so a restarted dispatcher gets its predecessor's slot back (and with
    it the predecessor's static membership of the consumer group, without waiting for a rebalance).
    """
    for slot in range(max_slots):
        if conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s)", (DISPATCHER_SLOT_LOCK, slot)).fetchone()[0]:
            return slot
    raise RuntimeError(f"all {max_slots} dispatcher slots are taken: more dispatchers than the deployment allows")


def load_offsets(conn) -> dict[tuple[str, int], int]:
    return {(t, p): o for t, p, o in conn.execute("SELECT topic, partition, next_offset FROM dispatcher_offsets")}


def store_offsets(conn, offsets: dict[tuple[str, int], int]) -> None:
    """Remember the next offset to read per partition (after the records before it were applied)."""
    with conn.transaction():
        for (topic, partition), nxt in offsets.items():
            conn.execute(
                "INSERT INTO dispatcher_offsets (topic, partition, next_offset) VALUES (%s,%s,%s)"
                " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                (topic, partition, nxt),
            )


def store_demand_update(conn, update) -> bool:
    """Keep a rescue centre's demand update once (by update id); False for a replay."""
    return conn.execute(
        "INSERT INTO demand_updates (update_id, region, rescue_centre, material_id, period, qty, at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING update_id",
        (update.update_id, update.region, update.rescue_centre, update.material, update.period, update.qty,
         update.at),
    ).fetchone() is not None


def demand_overrides(conn, region: str, since) -> dict[tuple[str, str, int], float]:
    """The latest demand update per (rescue centre, material, period) made since the declaration."""
    rows = conn.execute(
        "SELECT DISTINCT ON (rescue_centre, material_id, period) rescue_centre, material_id, period, qty::float8"
        " FROM demand_updates WHERE region = %s AND at >= %s"
        " ORDER BY rescue_centre, material_id, period, at DESC, update_id DESC", (region, since)).fetchall()
    return {(rc, m, p): q for rc, m, p, q in rows}


# --------------------------------------------------------------------------- reading for people
@dataclass(frozen=True)
class ReportFacts:
    """What the database holds about one emergency, for its final report (dispatcher.report)."""

    emergency_id: str
    region: str
    periods: int
    demand_scale: float
    declared_at: datetime
    ended_at: datetime | None
    demand_source: str
    material_units: dict[str, str]
    demand_overrides: dict[tuple[str, str, int], float]
    #: material -> units delivered to rescue centres
    delivered: dict[str, float]
    #: material -> units picked at sites (delivered supply legs) and what those orders asked for
    picked: dict[str, float]
    ordered: dict[str, float]
    #: (period, status, objective, gap, solve s, summary dict, published_at) per plan, by period
    plans: list[tuple] = field(default_factory=list)
    orders_by_status: dict[str, int] = field(default_factory=dict)
    failure_reasons: list[str] = field(default_factory=list)


def report_facts(conn, emergency_id: str, material_ids: Sequence[str]) -> ReportFacts:
    """Everything the emergency's report counts, read in the caller's transaction."""
    (region, periods, scale, declared, ended, source) = conn.execute(
        "SELECT region, periods, demand_scale, declared_at, ended_at, demand_source FROM emergencies"
        " WHERE emergency_id = %s", (emergency_id,)).fetchone()
    delivered = dict(conn.execute(
        "SELECT material_id, sum(delivered_qty)::float8 FROM dispatch_orders WHERE emergency_id = %s"
        " AND leg = 'delivery' AND status = 'delivered' GROUP BY material_id", (emergency_id,)).fetchall())
    supply_rows = conn.execute(
        "SELECT material_id, sum(delivered_qty)::float8, sum(qty)::float8 FROM dispatch_orders"
        " WHERE emergency_id = %s AND leg = 'supply' AND status = 'delivered' GROUP BY material_id",
        (emergency_id,)).fetchall()
    plans = [(period, status, objective, gap, solve_s, _json_dict(summary), published)
             for (period, status, objective, gap, solve_s, summary, published) in conn.execute(
                 "SELECT period, status, objective, gap, solve_seconds, summary, published_at FROM plans"
                 " WHERE emergency_id = %s ORDER BY period", (emergency_id,))]
    by_status = dict(conn.execute("SELECT status, count(*) FROM dispatch_orders WHERE emergency_id = %s"
                                  " GROUP BY status", (emergency_id,)).fetchall())
    failures = [r[0] for r in conn.execute(
        "SELECT DISTINCT e.reason FROM order_status_events e JOIN dispatch_orders o USING (order_id)"
        " WHERE o.emergency_id = %s AND e.status = 'failed'", (emergency_id,))]
    return ReportFacts(
        emergency_id=emergency_id, region=region, periods=periods, demand_scale=scale, declared_at=declared,
        ended_at=ended, demand_source=source, material_units=material_units(conn, material_ids),
        demand_overrides=demand_overrides(conn, region, declared), delivered=delivered,
        picked={m: got for m, got, _asked in supply_rows}, ordered={m: asked for m, _got, asked in supply_rows},
        plans=plans, orders_by_status=by_status, failure_reasons=failures)


def _json_dict(value) -> dict:
    """A jsonb column as a dict (psycopg gives a dict; a text column gives its JSON)."""
    return value if isinstance(value, dict) else json.loads(value) if value else {}


def region_status_rows(conn) -> list[tuple]:
    """Per region its open emergency (else its last one) with the last plan and order counts."""
    return conn.execute(
        "SELECT DISTINCT ON (e.region) e.region, e.emergency_id, e.declared_at, e.periods, e.period_length_s,"
        " e.ended_at, e.demand_source, p.period, p.status, p.objective, p.gap, p.solve_seconds, p.created_at,"
        " (SELECT count(*) FROM dispatch_orders o WHERE o.emergency_id = e.emergency_id),"
        " (SELECT count(*) FROM dispatch_orders o WHERE o.emergency_id = e.emergency_id AND o.status = 'delivered')"
        " FROM emergencies e"
        " LEFT JOIN LATERAL (SELECT * FROM plans WHERE emergency_id = e.emergency_id ORDER BY period DESC LIMIT 1) p ON true"
        " ORDER BY e.region, (e.ended_at IS NULL) DESC, e.declared_at DESC"
    ).fetchall()


def regions(conn) -> list[str]:
    """Every region with a registered site."""
    return [r[0] for r in conn.execute("SELECT DISTINCT region FROM sites ORDER BY region")]


def order_listing(conn, region: str | None, status: str | None, emergency_id: str | None,
                  limit: int) -> tuple[list[tuple], list[tuple]]:
    """Orders matching the filters, newest first, and (status, orders, units) per status."""
    where, args = ["true"], []
    for column, value in (("e.region", region), ("o.status", status), ("o.emergency_id", emergency_id)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    cond = " AND ".join(where)
    counts = conn.execute(
        f"SELECT o.status, count(*), sum(o.qty) FROM dispatch_orders o JOIN emergencies e USING (emergency_id)"
        f" WHERE {cond} GROUP BY o.status ORDER BY o.status", args).fetchall()
    rows = conn.execute(
        f"SELECT o.order_id, e.region, o.period, o.leg, o.origin, o.destination, o.material_id, o.qty, o.unit,"
        f" o.status, o.delivered_qty, o.status_at FROM dispatch_orders o JOIN emergencies e USING (emergency_id)"
        f" WHERE {cond} ORDER BY o.created_at DESC, o.order_id LIMIT %s", args + [limit]).fetchall()
    return rows, counts


# --------------------------------------------------------------------------- mode events
def mode_event_verdict(conn, event_id: str) -> tuple[bool, str | None, str | None] | None:
    """(accepted, error, emergency id) of a mode event already applied, None for a new one."""
    return conn.execute("SELECT accepted, error, emergency_id FROM mode_events WHERE event_id = %s",
                        (event_id,)).fetchone()


def open_emergency_of(conn, region: str) -> tuple[str, datetime] | None:
    """(emergency id, declared at) of the region's open emergency, if any."""
    return conn.execute("SELECT emergency_id, declared_at FROM emergencies WHERE region = %s AND ended_at IS NULL",
                        (region,)).fetchone()


def known_grid_cells(conn, region: str, cells: Iterable[str]) -> set[str]:
    """The given grid cells that have a site in the region."""
    return {r[0] for r in conn.execute("SELECT DISTINCT grid_cell FROM sites WHERE region = %s AND grid_cell = ANY(%s)",
                                       (region, list(cells)))}


def store_declared(conn, event, emergency_id: str) -> None:
    """A new emergency from its accepted declare event."""
    conn.execute(
        "INSERT INTO emergencies (emergency_id, region, grid_cells, declared_at, declared_by, reason,"
        " periods, period_length_s, demand_source, demand_scale)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (emergency_id, event.region, list(event.grid_cells), event.at, event.actor, event.reason,
         event.periods, event.period_length_s, event.demand_source, event.demand_scale),
    )


def store_ended(conn, event, emergency_id: str) -> None:
    """The emergency's end from its accepted end event (never before its declaration)."""
    declared = conn.execute("SELECT declared_at FROM emergencies WHERE emergency_id = %s",
                            (emergency_id,)).fetchone()[0]
    conn.execute("UPDATE emergencies SET ended_at = %s, ended_by = %s, end_reason = %s WHERE emergency_id = %s",
                 (max(event.at, declared), event.actor, event.reason, emergency_id))


def store_mode_event(conn, event_id: str, region: str, kind: str, at: datetime, actor: str, reason: str | None,
                     payload: dict, error: str | None, emergency_id: str | None) -> None:
    """The mode event with its verdict (accepted when ``error`` is None), once per event id."""
    conn.execute(
        "INSERT INTO mode_events (event_id, region, kind, at, actor, reason, payload, accepted, error, emergency_id)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (event_id, region, kind, at, actor, reason, Jsonb(payload), error is None, error, emergency_id),
    )
