"""What a carrier needs on an order (dispatch order contract v2), added to the plan's orders.

Both ends with name, address, coordinates and contact (sites from the registry in the database,
distribution and rescue centres from the emergency's scenario file), the pick and delivery
windows and the accept-by instant (from the emergency's clock), and the material's name, handling
class, weight and volume per unit (the registry's catalogue). What a file does not state is null,
never invented. :func:`add_carrier_details` is the one entry point; the rest is pure.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from vreserve.emergencies import Emergency, accept_by
from vreserve.schemas.dispatch import (CarrierDetails, Contact, DispatchOrder, MaterialDetails, OrderEnd,
                                       TimeWindow)

SITES_SQL = ("SELECT site_id, name, address, lat, lon, contact_name, contact_phone, contact_email"
             " FROM sites WHERE site_id = ANY(%s)")
MATERIALS_SQL = ("SELECT material_id, name, handling, weight_kg_per_unit, volume_m3_per_unit"
                 " FROM materials WHERE material_id = ANY(%s)")


def _contact(name: Any, phone: Any, email: Any) -> Contact | None:
    return None if name is None and phone is None and email is None else Contact(name=name, phone=phone, email=email)


def read_registry_details(conn, orders: Sequence[DispatchOrder]) -> tuple[list[OrderEnd], dict[str, MaterialDetails]]:
    """The supply sites and materials of ``orders`` as the registry in the database states them."""
    site_ids = sorted({o.origin for o in orders if o.leg == "supply"})
    material_ids = sorted({o.material for o in orders})
    sites = [OrderEnd(id=r[0], kind="site", name=r[1], address=r[2], lat=r[3], lon=r[4],
                      contact=_contact(r[5], r[6], r[7]))
             for r in conn.execute(SITES_SQL, (site_ids,)).fetchall()]
    materials = {r[0]: MaterialDetails(name=r[1], handling=r[2], weight_kg_per_unit=r[3], volume_m3_per_unit=r[4])
                 for r in conn.execute(MATERIALS_SQL, (material_ids,)).fetchall()}
    return sites, materials


def centre_ends(scenario: Mapping[str, Any]) -> list[OrderEnd]:
    """Distribution and rescue centres of a scenario (contract data) as order ends."""
    out: list[OrderEnd] = []
    for key, kind in (("distribution_centres", "distribution_centre"), ("rescue_centres", "rescue_centre")):
        for c in scenario.get(key) or ():
            contact = c.get("contact")
            out.append(OrderEnd(id=c["id"], kind=kind, name=c.get("name") or c["id"], address=c.get("address"),
                                lat=c.get("lat"), lon=c.get("lon"),
                                contact=Contact.model_validate(contact) if contact is not None else None))
    return out


def period_window(em: Emergency, period: int, created_at: datetime) -> TimeWindow:
    """The order's period, from when the order exists: a plan moves each period's flows within the
    period. An order made after its period ended (a late plan after a restart) gets one period's
    length from its creation rather than a window already past."""
    opens = max(em.period_start(period), created_at)
    closes = em.period_start(period + 1)
    if closes <= opens:
        closes = opens + timedelta(seconds=em.period_length_s)
    return TimeWindow(start=opens, end=closes)


def _total(qty: float, per_unit: float | None) -> float | None:
    return None if per_unit is None else round(qty * per_unit, 6)


def _end(places: Mapping[tuple[str, str], OrderEnd], place_id: str, kind: str) -> OrderEnd:
    return places.get((kind, place_id)) or OrderEnd(id=place_id, kind=kind, name=place_id)


def with_carrier_details(orders: Sequence[DispatchOrder], em: Emergency, places: Sequence[OrderEnd],
                         materials: Mapping[str, MaterialDetails]) -> list[DispatchOrder]:
    """``orders`` with their :class:`CarrierDetails` (pure). ``places``: the sites and centres.
    An end or material the inputs do not know is named by its id, with everything else null."""
    by_kind = {(p.kind, p.id): p for p in places}
    out = []
    for o in orders:
        origin_kind = "site" if o.leg == "supply" else "distribution_centre"
        dest_kind = "distribution_centre" if o.leg == "supply" else "rescue_centre"
        mat = materials.get(o.material) or MaterialDetails(name=o.material)
        window = period_window(em, o.period, o.created_at)
        details = CarrierDetails(
            origin_place=_end(by_kind, o.origin, origin_kind),
            destination_place=_end(by_kind, o.destination, dest_kind),
            pick_window=window, delivery_window=window, accept_by=accept_by(em, o.created_at),
            material_details=mat, total_weight_kg=_total(o.qty, mat.weight_kg_per_unit),
            total_volume_m3=_total(o.qty, mat.volume_m3_per_unit))
        out.append(replace(o, details=details))
    return out


def add_carrier_details(conn, orders: Sequence[DispatchOrder], em: Emergency,
                        scenario: Mapping[str, Any]) -> list[DispatchOrder]:
    """Read what the registry says about the orders' sites and materials, and add the details."""
    if not orders:
        return list(orders)
    sites, materials = read_registry_details(conn, orders)
    return with_carrier_details(orders, em, [*centre_ends(scenario), *sites], materials)
