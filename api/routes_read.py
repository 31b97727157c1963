"""Read resources: sites, materials, live stock (now and as of a time), grid cells, alerts,
emergencies and their plans, orders with status history, contracts, settlement, audits.

Every list is ``{"items": [...], "limit", "offset", "next_offset"}`` (``next_offset`` null on the
last page); every quantity has its ``unit`` beside it; money is integer minor units of
``currency``. Carrier tokens see only the orders of their routes; owner tokens only their sites,
contracts and settlement lines.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
import orjson

from api import timing
from api.errors import ApiError
from api.security import (IDENTITY_COLUMNS, IDENTITY_JOINS, access, authorize, credentials, lookup_identity, oauth2,
                          requires)
from vreserve.identity import Identity
from vreserve.ideal_shortage import PreviewError, emergency_ideal
from vreserve.warehouse import totals_by_material, virtual_warehouse

router = APIRouter()

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[str, Path(max_length=200, pattern=_NO_CONTROL)]
Filter = Annotated[str | None, Query(max_length=200, pattern=_NO_CONTROL)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip")]

VIEWER = requires("viewer")
VIEWER_OR_OWNER = requires("viewer", ("owner",))
VIEWER_OR_CARRIER = requires("viewer", ("carrier",))


class Page(BaseModel):
    items: list[dict[str, Any]]
    limit: int
    offset: int
    next_offset: int | None


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rows(conn, sql: str, params: dict) -> list[dict]:
    cur = conn.execute(sql, params)
    names = [d.name for d in cur.description]
    return [{k: _plain(v) for k, v in zip(names, row)} for row in cur.fetchall()]


def _page(conn, sql: str, params: dict, limit: int, offset: int) -> Page:
    """Run ``sql`` (ordered, without LIMIT) for one page; one row more tells whether a next page exists."""
    rows = _rows(conn, f"{sql} LIMIT %(_limit)s OFFSET %(_offset)s", {**params, "_limit": limit + 1, "_offset": offset})
    more = len(rows) > limit
    return Page(items=rows[:limit], limit=limit, offset=offset, next_offset=offset + limit if more else None)


def _conn(request: Request):
    return request.app.state.api.pool.connection()


def _owner_of(who: Identity) -> str | None:
    return who.name if who.kind == "owner" else None


# ------------------------------------------------------------------------------------ sites
SITES_SQL = """SELECT site_id, name, owner_id, owner_kind, tier, region, grid_cell, lat, lon, status, trust
FROM sites WHERE (%(region)s::text IS NULL OR region = %(region)s) AND (%(cell)s::text IS NULL OR grid_cell = %(cell)s)
AND (%(kind)s::text IS NULL OR owner_kind = %(kind)s) AND (%(status)s::text IS NULL OR status = %(status)s)
AND (%(owner)s::text IS NULL OR owner_id = %(owner)s) ORDER BY site_id"""


@router.get("/sites", response_model=Page, tags=["sites"], openapi_extra=access("viewer", ("owner",)),
            summary="Sites of the registry (an owner token: its own)")
def sites(request: Request, region: Filter = None, grid_cell: Filter = None, owner_kind: Filter = None,
          status: Filter = None, limit: Limit = 100, offset: Offset = 0,
          who: Identity = Depends(VIEWER_OR_OWNER)) -> Page:
    """`lat`/`lon` in degrees (WGS 84); `trust` 0..1 (share of reported stock the planner counts on)."""
    with _conn(request) as conn:
        return _page(conn, SITES_SQL, {"region": region, "cell": grid_cell, "kind": owner_kind, "status": status,
                                       "owner": _owner_of(who)}, limit, offset)


@router.get("/movements", response_model=Page, tags=["sites"], openapi_extra=access("viewer", ("owner",)),
            summary="Declared consumptions / replenishments, newest first (`vreserve movements list`)")
def movements(request: Request, site_id: Filter = None, limit: Limit = 100, offset: Offset = 0,
              who: Identity = Depends(VIEWER_OR_OWNER)) -> Page:
    """`qty` in `unit`; `actor` who declared it; an owner token sees its own sites' only."""
    with _conn(request) as conn:
        return _page(conn, "SELECT m.movement_id, m.site_id, m.material_id, m.kind, m.qty::float8 AS qty, m.unit,"
                           " m.at, m.actor FROM stock_movements m JOIN sites s USING (site_id)"
                           " WHERE (%(site)s::text IS NULL OR m.site_id = %(site)s)"
                           " AND (%(owner)s::text IS NULL OR s.owner_id = %(owner)s)"
                           " ORDER BY m.at DESC, m.movement_id", {"site": site_id, "owner": _owner_of(who)},
                     limit, offset)


@router.get("/sites/{site_id}", tags=["sites"], openapi_extra=access("viewer", ("owner",)),
            summary="One site with its contracted and reported stock per material")
def site(request: Request, site_id: Id, who: Identity = Depends(VIEWER_OR_OWNER)) -> dict:
    with _conn(request) as conn:
        rows = _rows(conn, SITES_SQL.replace("ORDER BY", "AND site_id = %(id)s ORDER BY"),
                     {"region": None, "cell": None, "kind": None, "status": None, "owner": _owner_of(who),
                      "id": site_id})
        if not rows:
            raise ApiError(404, "site_not_found", f"no site {site_id!r}" + (" of yours" if _owner_of(who) else ""))
        rows[0]["materials"] = _site_stock(conn, site_id)
    return rows[0]


SITE_STOCK_SQL = """SELECT m.material_id, m.name, m.unit, sm.contracted_qty, l.qty AS reported_qty,
    l.unit AS reported_unit, l.ts AS reported_at FROM site_materials sm JOIN materials m USING (material_id)
    LEFT JOIN stock_latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
    WHERE sm.site_id = %(id)s ORDER BY m.material_id"""


def _site_stock(conn, site_id: str) -> list[dict]:
    return _rows(conn, SITE_STOCK_SQL, {"id": site_id})


@router.get("/sites/{site_id}/stock", tags=["stock"], openapi_extra=access("viewer", ("owner",)),
            summary="Live stock of one site, per material")
async def site_stock(request: Request, site_id: Id, token: str | None = Depends(oauth2)) -> Response:
    """`reported_qty` is the latest accepted reading (in `unit`, the material's unit), `reported_at` its time.

    The hottest read (dashboards, carriers' tools), so it does in one statement what other routes do
    in two: the caller's identity (the same checks as every route: account enabled, token neither
    revoked nor expired) and the site's stock, one round trip to the database on the event loop;
    the answer serialised with orjson. Profiled at 10,000 sites, this cut the server's CPU per
    read by a third (docs/api.md)."""
    creds = credentials(request, token)
    with timing.stage(request, "db"):
        async with request.app.state.api.apool.connection() as conn:
            cur = await conn.execute(SITE_LIVE_STOCK_SQL, {"id": site_id, "user": creds.user,
                                                           "token_id": creds.token_id})
            rows = await cur.fetchall()
    who = authorize(lookup_identity(request, creds, rows[0]), "viewer", ("owner",))
    if rows[0][4] is None or (who.kind == "owner" and rows[0][4] != who.name):
        raise ApiError(404, "site_not_found", f"no site {site_id!r}")
    materials = [dict(zip(_LIVE_STOCK_FIELDS, r[5:])) for r in rows if r[5] is not None]
    return Response(orjson.dumps({"site_id": site_id, "materials": materials}, default=_orjson_default),
                    media_type="application/json")


def _orjson_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not serialisable: {type(value).__name__}")


_LIVE_STOCK_FIELDS = ("material_id", "name", "unit", "contracted_qty", "reported_qty", "reported_unit", "reported_at")

#: The caller's identity (security.IDENTITY_COLUMNS), then the site's owner (for an owner token's
#: check) with its stock per material; one row with NULL materials for a site without any, and one
#: row of NULLs after the identity for an unknown site.
SITE_LIVE_STOCK_SQL = f"""SELECT {IDENTITY_COLUMNS}, x.* FROM (SELECT 1) one {IDENTITY_JOINS}
LEFT JOIN (SELECT s.owner_id, m.material_id, m.name, m.unit, sm.contracted_qty, l.qty AS reported_qty,
    l.unit AS reported_unit, l.ts AS reported_at FROM sites s
    LEFT JOIN site_materials sm ON sm.site_id = s.site_id LEFT JOIN materials m ON m.material_id = sm.material_id
    LEFT JOIN stock_latest l ON l.site_id = sm.site_id AND l.material_id = sm.material_id
    WHERE s.site_id = %(id)s) x ON true ORDER BY x.material_id"""


# --------------------------------------------------------------------------- materials, stock
@router.get("/materials", response_model=Page, tags=["stock"], openapi_extra=access("viewer"),
            summary="Materials and the unit each is counted in")
def materials(request: Request, limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(VIEWER)) -> Page:
    with _conn(request) as conn:
        return _page(conn, "SELECT material_id, name, unit, class, consumable FROM materials ORDER BY material_id",
                     {}, limit, offset)


@router.get("/stock", tags=["stock"], openapi_extra=access("viewer"),
            summary="The virtual warehouse per grid cell and material, now or as of a time")
def stock(request: Request, grid_cell: Filter = None, material: Filter = None, owner_kind: Filter = None,
          at: Annotated[datetime | None, Query(description="RFC 3339; stock as reported at that time")] = None,
          limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(VIEWER)) -> dict:
    """Per (grid cell, material), in the material's `unit`: reported, contracted, reserved (open supply
    orders), safety level, available above it; `totals` per material over all matching cells."""
    if at is not None and at.tzinfo is None:
        raise ApiError(422, "validation_error", "at: give a time zone (e.g. 2026-11-22T08:00:00Z)")
    with _conn(request) as conn:
        rows = virtual_warehouse(conn, grid_cell, material, owner_kind, at)
    items = [r.to_dict() for r in rows[offset:offset + limit]]
    return {"at": at.isoformat() if at else None, "items": items, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(rows) > offset + limit else None,
            "totals": totals_by_material(rows)}


@router.get("/grid-cells", response_model=Page, tags=["stock"], openapi_extra=access("viewer"),
            summary="Grid cells: sites, active sites, open alerts")
def grid_cells(request: Request, region: Filter = None, limit: Limit = 100, offset: Offset = 0,
               who: Identity = Depends(VIEWER)) -> Page:
    with _conn(request) as conn:
        return _page(conn, """SELECT s.region, s.grid_cell, count(*) AS sites,
            count(*) FILTER (WHERE s.status = 'active') AS active_sites, avg(s.lat) AS lat, avg(s.lon) AS lon,
            (SELECT count(*) FROM alerts a WHERE a.grid_cell = s.grid_cell AND a.resolved_at IS NULL) AS open_alerts
            FROM sites s WHERE (%(region)s::text IS NULL OR s.region = %(region)s)
            GROUP BY s.region, s.grid_cell ORDER BY s.region, s.grid_cell""", {"region": region}, limit, offset)


# ---------------------------------------------------------------------------------- alerts
@router.get("/alerts", response_model=Page, tags=["alerts"], openapi_extra=access("viewer"),
            summary="Alerts (newest first)")
def alerts(request: Request, kind: Filter = None, site_id: Filter = None, grid_cell: Filter = None,
           open_only: Annotated[bool, Query(alias="open")] = False, limit: Limit = 100, offset: Offset = 0,
           who: Identity = Depends(VIEWER)) -> Page:
    with _conn(request) as conn:
        return _page(conn, """SELECT alert_id, kind, severity, site_id, grid_cell, material_id, message, at,
            details, resolved_at, resolved_by, resolve_note, acknowledged_at, acknowledged_by, acknowledge_note,
            repeats, last_seen_at FROM alerts
            WHERE (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(site)s::text IS NULL OR site_id = %(site)s)
            AND (%(cell)s::text IS NULL OR grid_cell = %(cell)s) AND (NOT %(open)s OR resolved_at IS NULL)
            ORDER BY at DESC, alert_id""", {"kind": kind, "site": site_id, "cell": grid_cell, "open": open_only},
                     limit, offset)


# ------------------------------------------------------------------------------ emergencies
EMERGENCY_SQL = """SELECT e.emergency_id, e.region, e.grid_cells, e.declared_at, e.declared_by, e.reason, e.periods,
    e.period_length_s, e.demand_source, e.demand_scale, e.ended_at, e.ended_by, e.end_reason, e.closed_out_at,
    (SELECT count(*) FROM plans p WHERE p.emergency_id = e.emergency_id) AS plans,
    (SELECT count(*) FROM dispatch_orders o WHERE o.emergency_id = e.emergency_id) AS orders
    FROM emergencies e WHERE (%(region)s::text IS NULL OR e.region = %(region)s)
    AND (%(id)s::text IS NULL OR e.emergency_id = %(id)s) AND (NOT %(open)s OR e.ended_at IS NULL)
    ORDER BY e.declared_at DESC, e.emergency_id"""


@router.get("/emergencies", response_model=Page, tags=["emergencies"], openapi_extra=access("viewer"),
            summary="Emergencies (newest first); `period_length_s` in seconds")
def emergencies(request: Request, region: Filter = None, open_only: Annotated[bool, Query(alias="open")] = False,
                limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(VIEWER)) -> Page:
    with _conn(request) as conn:
        return _page(conn, EMERGENCY_SQL, {"region": region, "id": None, "open": open_only}, limit, offset)


@router.get("/emergencies/{emergency_id}", tags=["emergencies"], openapi_extra=access("viewer"),
            summary="One emergency, with its mode events")
def emergency(request: Request, emergency_id: Id, who: Identity = Depends(VIEWER)) -> dict:
    with _conn(request) as conn:
        rows = _rows(conn, EMERGENCY_SQL, {"region": None, "id": emergency_id, "open": False})
        if not rows:
            raise ApiError(404, "emergency_not_found", f"no emergency {emergency_id!r}")
        rows[0]["mode_events"] = _rows(conn, "SELECT event_id, kind, at, actor, reason, accepted, error FROM mode_events"
                                             " WHERE emergency_id = %(id)s ORDER BY at", {"id": emergency_id})
    return rows[0]


@router.get("/mode-events", response_model=Page, tags=["emergencies"], openapi_extra=access("viewer"),
            summary="Every mode event as the dispatcher recorded it, accepted or not (newest first)")
def mode_events(request: Request, region: Filter = None, limit: Limit = 100, offset: Offset = 0,
                who: Identity = Depends(VIEWER)) -> Page:
    with _conn(request) as conn:
        return _page(conn, "SELECT event_id, region, kind, at, actor, reason, accepted, error, emergency_id"
                           " FROM mode_events WHERE (%(region)s::text IS NULL OR region = %(region)s)"
                           " ORDER BY at DESC, event_id", {"region": region}, limit, offset)


class PlansPage(Page):
    ideal: dict[str, Any]


@router.get("/emergencies/{emergency_id}/plans", response_model=PlansPage, tags=["emergencies"],
            openapi_extra=access("viewer"), summary="Plans per period: status, gap, shortage per material vs ideal")
def plans(request: Request, emergency_id: Id, limit: Limit = 100, offset: Offset = 0,
          who: Identity = Depends(VIEWER)) -> PlansPage:
    """`materials[m]` holds, in the material's `unit`: available, demand_period, due_with_backlog,
    planned_delivery, planned_pick, planned_shortage, `shortage_rate` (share 0..1 of what was due)
    and `ideal_shortage_rate` (share 0..1: the emergency's ideal, the floor no plan can beat over the
    horizon; a single period may be below it). `gap` is a share 0..1, `solve_seconds` in seconds.
    `ideal` is the emergency's ideal shortage per material (vreserve/ideal_shortage.py, the report's
    definition): demand over the horizon, centres' usable stock, live supply the first plan saw,
    `ideal_shortage` (all in `unit`) and `ideal_shortage_rate`; empty `materials` before the first
    plan or when the demand source cannot be read (`ideal_note` says which). Unknown emergency: 404."""
    demand_dir = request.app.state.api.settings.state_dir / "api-demand"
    with _conn(request) as conn:
        try:
            ideal = emergency_ideal(conn, emergency_id, demand_dir)
        except PreviewError as exc:
            raise ApiError(404, exc.code, str(exc)) from None
        page = _page(conn, "SELECT plan_id, period, created_at, status, objective, gap, solve_seconds, summary"
                           " FROM plans WHERE emergency_id = %(id)s ORDER BY period", {"id": emergency_id},
                     limit, offset)
    rates = {m: f["ideal_shortage_rate"] for m, f in (ideal or {}).get("materials", {}).items()}
    for item in page.items:
        summary = item.pop("summary") or {}
        mats = summary.get("materials") or {}
        for m, fig in mats.items():
            due = fig.get("due_with_backlog") or 0
            fig["shortage_rate"] = (fig.get("planned_shortage") or 0) / due if due else None
            fig["ideal_shortage_rate"] = rates.get(m)
        item.update(materials=mats, orders=summary.get("orders"), cancelled=summary.get("cancelled"),
                    message=summary.get("message"), timings_s=summary.get("timings_s"))
    return PlansPage(**page.model_dump(), ideal=_ideal_out(ideal, bool(page.items) or offset > 0))


def _ideal_out(ideal: dict | None, planned: bool) -> dict:
    """The ideal block with a note saying why it is missing, when it is."""
    if ideal is not None:
        return {**ideal, "ideal_note": None}
    return {"materials": {}, "notes": [], "ideal_note": "the demand source of the emergency cannot be read"
            if planned else "no plan yet: live supply is what the first plan sees"}


# ----------------------------------------------------------------------------------- orders
ORDERS_SQL = """SELECT o.order_id, o.plan_id, o.emergency_id, e.region, o.period, o.leg, o.origin, o.destination,
    o.material_id, o.qty, o.unit, o.status, o.delivered_qty, o.created_at, o.status_at, o.picked_at, o.superseded_by,
    o.carrier_details
    FROM dispatch_orders o JOIN emergencies e USING (emergency_id)
    WHERE (%(em)s::text IS NULL OR o.emergency_id = %(em)s) AND (%(status)s::text IS NULL OR o.status = %(status)s)
    AND (%(region)s::text IS NULL OR e.region = %(region)s) AND (%(id)s::text IS NULL OR o.order_id = %(id)s)
    AND (%(carrier)s::text IS NULL OR e.region = ANY(SELECT unnest(regions) FROM carriers
                                                   WHERE carrier_id = %(carrier)s))
    ORDER BY o.created_at DESC, o.order_id"""


def _with_carrier_details(rows: list[dict]) -> list[dict]:
    """Each order with what a carrier needs under the names the dispatch-orders topic uses (v2:
    origin_place, destination_place, pick_window, delivery_window, accept_by, material_details,
    total_weight_kg, total_volume_m3; absent on orders stored before contract v2)."""
    for row in rows:
        row.update(row.pop("carrier_details", None) or {})
    return rows


def _carrier_of(who: Identity) -> str | None:
    return who.name if who.kind == "carrier" else None


@router.get("/orders", response_model=Page, tags=["orders"], openapi_extra=access("viewer", ("carrier",)),
            summary="Dispatch orders (a carrier token: those of its routes), newest first")
def orders(request: Request, emergency_id: Filter = None, status: Filter = None, region: Filter = None,
           limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(VIEWER_OR_CARRIER)) -> Page:
    """`qty` and `delivered_qty` in `unit` (the material's unit); with what a carrier needs (both
    ends, windows, accept-by, material handling, weight in kg and volume in m3; docs/contracts.md)."""
    with _conn(request) as conn:
        page = _page(conn, ORDERS_SQL, {"em": emergency_id, "status": status, "region": region, "id": None,
                                        "carrier": _carrier_of(who)}, limit, offset)
    _with_carrier_details(page.items)
    return page


@router.get("/orders/{order_id}", tags=["orders"], openapi_extra=access("viewer", ("carrier",)),
            summary="One order with its status history")
def order(request: Request, order_id: Id, who: Identity = Depends(VIEWER_OR_CARRIER)) -> dict:
    with _conn(request) as conn:
        rows = _rows(conn, ORDERS_SQL, {"em": None, "status": None, "region": None, "id": order_id,
                                        "carrier": _carrier_of(who)})
        if not rows:
            raise ApiError(404, "order_not_found", f"no order {order_id!r}" + (" on your routes" if _carrier_of(who) else ""))
        _with_carrier_details(rows)
        rows[0]["history"] = _rows(conn, "SELECT status_id, status, at, qty, reason, actor, received_at"
                                         " FROM order_status_events WHERE order_id = %(id)s ORDER BY at, received_at",
                                   {"id": order_id})
        for h in rows[0]["history"]:
            h["unit"] = rows[0]["unit"]
    return rows[0]


# ------------------------------------------------------------------------ contracts, settlement
CONTRACTS_SQL = """SELECT c.contract_id, c.site_id, s.owner_id, c.material_id, m.unit, c.committed_qty,
    c.valid_from, c.valid_to, c.standby_fee_minor_per_unit_day, c.call_off_price_minor_per_unit,
    c.min_response_minutes, c.penalty_minor_per_unit, coalesce(t.penalty_grace_share, 0) AS penalty_grace_share,
    coalesce(t.late_penalty_minor_per_unit, 0) AS late_penalty_minor_per_unit,
    coalesce(t.source, 'registry') AS source
    FROM contracts c JOIN sites s USING (site_id) JOIN materials m USING (material_id)
    LEFT JOIN contract_penalty_terms t USING (contract_id)
    WHERE (%(site)s::text IS NULL OR c.site_id = %(site)s) AND (%(owner)s::text IS NULL OR s.owner_id = %(owner)s)
    AND (%(ids)s::text[] IS NULL OR c.contract_id = ANY(%(ids)s))
    ORDER BY c.site_id, c.material_id, c.valid_from"""


def contract_rows(items: list[dict], currency: str) -> list[dict]:
    """Contract rows as the API shows them: dates as YYYY-MM-DD, money with its ``currency``."""
    for item in items:
        item["currency"] = currency
        for k in ("valid_from", "valid_to"):
            item[k] = str(item[k])
    return items


@router.get("/contracts", response_model=Page, tags=["supervision"], openapi_extra=access("viewer", ("owner",)),
            summary="Contracts (an owner token: its own); money in minor units of `currency`")
def contracts(request: Request, site_id: Filter = None, limit: Limit = 100, offset: Offset = 0,
              who: Identity = Depends(VIEWER_OR_OWNER)) -> Page:
    """`committed_qty` in `unit` (the material's unit); fees, prices and penalties in integer minor units
    of `currency` (`standby_fee_minor_per_unit_day` per unit and day); `min_response_minutes` minutes;
    `penalty_grace_share` 0..1 of an order; `source` where the terms were loaded from (`registry`,
    `file:NAME`, `api:ACTOR`)."""
    with _conn(request) as conn:
        page = _page(conn, CONTRACTS_SQL, {"site": site_id, "owner": _owner_of(who), "ids": None}, limit, offset)
    contract_rows(page.items, request.app.state.api.settings.currency)
    return page


@router.get("/settlement/statements", response_model=Page, tags=["supervision"],
            openapi_extra=access("supervisor", ("owner",)),
            summary="Settlement statements (an owner token: its own total per version)")
def statements(request: Request, emergency_id: Filter = None, limit: Limit = 100, offset: Offset = 0,
               who: Identity = Depends(requires("supervisor", ("owner",)))) -> Page:
    """`total_minor`: integer minor units of `currency`, positive = owed to the owner(s)."""
    with _conn(request) as conn:
        page = _page(conn, """SELECT st.statement_id, st.emergency_id, st.version, st.kind, st.period_from,
            st.period_to, st.issued_at, st.issued_by,
            CASE WHEN %(owner)s::text IS NULL THEN st.total_minor ELSE
                 (SELECT coalesce(sum(amount_minor), 0) FROM settlement_lines l
                  WHERE l.statement_id = st.statement_id AND l.owner_id = %(owner)s) END AS total_minor
            FROM settlement_statements st WHERE (%(em)s::text IS NULL OR st.emergency_id = %(em)s)
            AND (%(owner)s::text IS NULL OR EXISTS (SELECT 1 FROM settlement_lines l
                 WHERE l.statement_id = st.statement_id AND l.owner_id = %(owner)s))
            ORDER BY st.emergency_id, st.version""", {"em": emergency_id, "owner": _owner_of(who)}, limit, offset)
    currency = request.app.state.api.settings.currency
    for item in page.items:
        item.update(currency=currency, period_from=str(item["period_from"]), period_to=str(item["period_to"]))
    return page


@router.get("/settlement/statements/{statement_id}/lines", response_model=Page, tags=["supervision"],
            openapi_extra=access("supervisor", ("owner",)), summary="Lines of one statement")
def statement_lines(request: Request, statement_id: Id, limit: Limit = 100, offset: Offset = 0,
                    who: Identity = Depends(requires("supervisor", ("owner",)))) -> Page:
    """`qty` in `unit` (unit-days for standby), `rate_minor` and `amount_minor` in minor units of `currency`."""
    with _conn(request) as conn:
        page = _page(conn, """SELECT line_no, owner_id, owner_kind, site_id, material_id, unit, kind, qty, rate_minor,
            amount_minor, contract_id FROM settlement_lines WHERE statement_id = %(id)s
            AND (%(owner)s::text IS NULL OR owner_id = %(owner)s) ORDER BY line_no""",
                     {"id": statement_id, "owner": _owner_of(who)}, limit, offset)
    for item in page.items:
        item["currency"] = request.app.state.api.settings.currency
    return page


# ----------------------------------------------------------------------------------- audits
@router.get("/audits", response_model=Page, tags=["supervision"], openapi_extra=access("viewer"),
            summary="Recorded audits (newest first)")
def audits(request: Request, site_id: Filter = None, limit: Limit = 100, offset: Offset = 0,
           who: Identity = Depends(VIEWER)) -> Page:
    """`shortfall_share` 0..1 of reported units missing; `trust_*` 0..1."""
    with _conn(request) as conn:
        return _page(conn, "SELECT audit_id, site_id, auditor, at, source, passed, shortfall_share, trust_before,"
                           " trust_after, status_before, status_after FROM audits"
                           " WHERE (%(site)s::text IS NULL OR site_id = %(site)s) ORDER BY at DESC, audit_id",
                     {"site": site_id}, limit, offset)


@router.get("/audits/{audit_id}", tags=["supervision"], openapi_extra=access("viewer"),
            summary="One audit with its counts")
def audit(request: Request, audit_id: Id, who: Identity = Depends(VIEWER)) -> dict:
    with _conn(request) as conn:
        rows = _rows(conn, "SELECT audit_id, site_id, auditor, at, source, passed, shortfall_share, trust_before,"
                           " trust_after, status_before, status_after FROM audits WHERE audit_id = %(id)s",
                     {"id": audit_id})
        if not rows:
            raise ApiError(404, "audit_not_found", f"no audit {audit_id!r}")
        rows[0]["counts"] = _rows(conn, "SELECT material_id, reported_qty, counted_qty, unit FROM audit_counts"
                                        " WHERE audit_id = %(id)s ORDER BY material_id", {"id": audit_id})
    return rows[0]


# ----------------------------------------------------------------------------- dead letters
DEAD_LETTER_UNITS = {"at": "time the bridge refused the report (ISO 8601, UTC)",
                     "payload_head": "the first 120 bytes of the refused report, as text",
                     "kept_per_site": "refusals (the newest of each site the server holds)",
                     "kept_in_all": "refusals (the most the server holds over all sites)",
                     "reader": "records read from the topic and consumers started by this server process"}


@router.get("/sites/{site_id}/dead-letters", tags=["sites"], openapi_extra=access("viewer", ("owner",)),
            summary="Why a site's stock reports were refused, newest first (`vreserve ingest dead-letters`)")
def site_dead_letters(request: Request, site_id: Id,
                      since: Annotated[datetime | None, Query(description="Only refusals after this time "
                                                                          "(ISO 8601 with a zone)")] = None,
                      kind: Filter = None, limit: Limit = 100, offset: Offset = 0,
                      who: Identity = Depends(VIEWER_OR_OWNER)) -> dict:
    """The site's dead letters from the dead-letter topic (vreserve/dead_letters.py): each with
    `at`, `kind` (e.g. `schema`, `json`), `reason` and the head of the refused payload. Read-only.
    A site that is not in the registry may still have refusals (reports from an unknown site are
    refused), so viewers may ask for any id; an owner token only for its own sites (404 otherwise).
    The server tails the topic into memory, bounded: the newest `kept_per_site` refusals of each
    site and `kept_in_all` over all sites; `complete` is false when older refusals of this site
    were dropped by those bounds (the list is then not the whole history the topic keeps; `vreserve
    ingest dead-letters` reads the topic itself). Every answer includes each refusal written before
    the request. 503 `dead_letters_unavailable` if the topic cannot be read to its end within 10 s.
    Viewers also get `reader`: this server process's reader (records read, consumers started)."""

    if since is not None and since.tzinfo is None:
        raise ApiError(422, "validation_error", "since: give a time zone (e.g. 2026-12-01T10:00:00Z)",
                       fields=[{"field": "query.since", "reason": "a time zone is required"}])
    owner = _owner_of(who)
    if owner is not None:
        with _conn(request) as conn:
            if conn.execute("SELECT 1 FROM sites WHERE site_id = %s AND owner_id = %s",
                            (site_id, owner)).fetchone() is None:
                raise ApiError(404, "site_not_found", f"no site {site_id!r} of yours")
    reader = request.app.state.api.dead_letters
    try:
        found = reader.refusals(site_id, since, limit + 1, offset, kind)
    except Exception as exc:  # noqa: BLE001 - broker down or topic missing: say so, never a trace
        raise ApiError(503, "dead_letters_unavailable",
                       f"the dead-letter topic cannot be read now ({type(exc).__name__})") from None
    newest_first = list(reversed(found.items))
    return {"site_id": site_id, "items": [r.to_dict() for r in newest_first[:limit]], "units": DEAD_LETTER_UNITS,
            "limit": limit, "offset": offset, "next_offset": offset + limit if len(found.items) > limit else None,
            "complete": found.complete, "kept_per_site": reader.index.per_site, "kept_in_all": reader.index.in_all,
            **({} if owner is not None else {"reader": reader.stats()})}
