"""The flows of an emergency's current plan, for the map: supply site -> distribution centre ->
rescue centre, one arc per (leg, origin, destination, material) with its planned quantity.

Positions are never invented. A site's comes from the registry (``sites.lat`` / ``lon``); a
distribution or rescue centre's from the order's carrier details (the scenario file's ``lat`` /
``lon``, published with the order). An arc with an end that has no position is counted in
``unplaced`` and not drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Orders that are no longer part of what the plan moves.
NOT_MOVED = ("cancelled",)


@dataclass(frozen=True)
class OrderLeg:
    """One order as the map needs it: its arc, material and planned quantity (in ``unit``)."""

    leg: str
    origin: str
    destination: str
    material_id: str
    qty: float
    unit: str
    status: str


@dataclass(frozen=True)
class Place:
    """A drawn end of an arc: ``kind`` site / distribution_centre / rescue_centre, degrees WGS 84."""

    place_id: str
    kind: str
    name: str
    lat: float
    lon: float


def end_kinds(leg: str) -> tuple[str, str]:
    """What the origin and the destination of an order of this leg are."""
    return ("site", "distribution_centre") if leg == "supply" else ("distribution_centre", "rescue_centre")


def aggregate_flows(orders: Iterable[OrderLeg], places: Mapping[str, Place]) -> dict[str, Any]:
    """Arcs with their summed quantity per material; arcs whose ends have no position go to ``unplaced``."""
    arcs: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for o in orders:
        if o.status in NOT_MOVED:
            continue
        key = (o.leg, o.origin, o.destination, o.material_id)
        arc = arcs.setdefault(key, {"leg": o.leg, "origin": o.origin, "destination": o.destination,
                                    "material_id": o.material_id, "qty": 0.0, "unit": o.unit, "orders": 0})
        arc["qty"] += o.qty
        arc["orders"] += 1
    flows, unplaced, missing = [], [], set()
    for arc in sorted(arcs.values(), key=lambda a: (a["leg"] != "supply", a["material_id"], -a["qty"], a["origin"], a["destination"])):
        ends = [arc["origin"], arc["destination"]]
        absent = [e for e in ends if e not in places]
        (unplaced if absent else flows).append(arc)
        missing.update(absent)
    used = {e for a in flows for e in (a["origin"], a["destination"])}
    return {"flows": flows, "places": {p: vars(places[p]) for p in sorted(used)},
            "unplaced": {"flows": len(unplaced), "qty_by_material": _sum_by_material(unplaced),
                         "ends_without_position": sorted(missing)}}


def _sum_by_material(arcs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for a in arcs:
        m = out.setdefault(a["material_id"], {"qty": 0.0, "unit": a["unit"]})
        m["qty"] += a["qty"]
    return out


def places_from_details(rows: Iterable[tuple[str, str, Mapping[str, Any] | None]]) -> dict[str, Place]:
    """Centres' positions from orders' carrier details (``origin_place`` / ``destination_place``)."""
    out: dict[str, Place] = {}
    for origin, destination, details in rows:
        if not details:
            continue
        for end_id, key in ((origin, "origin_place"), (destination, "destination_place")):
            p = details.get(key) or {}
            if p.get("lat") is not None and p.get("lon") is not None and p.get("kind") != "site":
                out[end_id] = Place(end_id, p.get("kind") or "", p.get("name") or end_id, float(p["lat"]), float(p["lon"]))
    return out


LATEST_PLAN_SQL = """SELECT plan_id, period, status, created_at FROM plans WHERE emergency_id = %s
ORDER BY period DESC, created_at DESC LIMIT 1"""
PLAN_OF_PERIOD_SQL = """SELECT plan_id, period, status, created_at FROM plans WHERE emergency_id = %s AND period = %s
ORDER BY created_at DESC LIMIT 1"""
ORDERS_SQL = """SELECT leg, origin, destination, material_id, qty::float8, unit, status, carrier_details
FROM dispatch_orders WHERE plan_id = %s ORDER BY order_id"""
SITES_SQL = "SELECT site_id, name, lat, lon FROM sites WHERE site_id = ANY(%s)"


def read_flows(conn, emergency_id: str, period: int | None = None) -> dict[str, Any] | None:
    """The flows of the emergency's plan for ``period`` (default: the latest planned period); None
    when the emergency has no plan yet."""
    plan = conn.execute(PLAN_OF_PERIOD_SQL if period else LATEST_PLAN_SQL,
                        (emergency_id, period) if period else (emergency_id,)).fetchone()
    if plan is None:
        return None
    rows = conn.execute(ORDERS_SQL, (plan[0],)).fetchall()
    orders = [OrderLeg(*r[:7]) for r in rows]
    site_ids = sorted({o.origin for o in orders if o.leg == "supply"})
    places = places_from_details((r[1], r[2], r[7]) for r in rows)
    for site_id, name, lat, lon in conn.execute(SITES_SQL, (site_ids,)).fetchall():
        if lat is not None and lon is not None:
            places[site_id] = Place(site_id, "site", name, float(lat), float(lon))
    out = aggregate_flows(orders, places)
    out.update(emergency_id=emergency_id, plan_id=plan[0], period=plan[1], plan_status=plan[2],
               planned_at=plan[3].isoformat())
    return out
