"""Supervision resources: the assessment ranking of an emergency's suppliers, audit plans, and the
grid cells' safety levels.

- ``GET /assessments``: sites (and their owners, and owner kinds) ranked by how they served an
  emergency, computed from the orders, status records, readings and audits by the same code as
  `vreserve assess` (vreserve/assessment.py). An owner token sees only its own sites and itself.
- ``POST /audit-plans`` draws a risk-weighted spot-check plan and keeps it (the same code as
  `vreserve audit plan`, vreserve/sql_audit_plan.py); ``GET /audit-plans[/{id}]`` lists the kept
  plans, each drawn site with the first audit recorded since. Supervisors only: an owner who knew
  the plan would know when its sites will be inspected.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.errors import ApiError
from api.routes_read import Filter, Id, Limit, Offset, Page, _conn, _owner_of, _page, _plain, _rows
from api.routes_write import _audit
from api.security import access, requires
from vreserve import operations as ops
from vreserve import safety
from vreserve.assessment import WEIGHTS, assess, rank_owners
from vreserve.identity import Identity
from vreserve.sql_assessment import load_site_facts
from vreserve.sql_audit_plan import PLAN_SITES_SQL, PLANS_SQL, NoSitesToDraw, draw_plan
from vreserve.sql_supply import SettlementError

router = APIRouter()

SUPERVISOR = requires("supervisor")

#: What the numbers of an assessment are counted in (the ranking page prints these).
ASSESSMENT_UNITS = {
    "score": "share 0..1 (weighted mean of the available parts; see weights)",
    "fulfilment_share": "share 0..1 of ordered units delivered (mean over the site's materials)",
    "on_time_share": "share 0..1 of delivered orders handed over within the contract's response time",
    "reliability_share": "share 0..1 of expected readings that arrived on time",
    "audit_discrepancy_share": "share 0..1 of the site's audits that failed",
    "median_response_minutes": "minutes from order to first delivered status",
    "orders": "supply-leg orders (count)",
    "sites": "sites (count)",
}


def _figures(score) -> dict[str, Any]:
    """The shared figure names of a site, owner or owner-kind score, with units in the names."""
    return {"fulfilment_share": score.fulfilment, "median_response_minutes": score.median_response_min,
            "on_time_share": score.on_time_share, "reliability_share": score.reliability,
            "audit_discrepancy_share": score.discrepancy_share}


def _latest_emergency(conn) -> str:
    row = conn.execute("SELECT emergency_id FROM emergencies ORDER BY declared_at DESC, emergency_id DESC"
                       " LIMIT 1").fetchone()
    if row is None:
        raise ApiError(404, "emergency_not_found", "no emergency has been declared yet: nothing to assess")
    return row[0]


@router.get("/assessments", tags=["supervision"], openapi_extra=access("viewer", ("owner",)),
            summary="Ranking of the sites and owners that supplied an emergency (an owner token: its own)")
def assessments(request: Request, emergency_id: Filter = None, limit: Limit = 100, offset: Offset = 0,
                who: Identity = Depends(requires("viewer", ("owner",)))) -> dict:
    """`items`: sites by rank (1 best) with `score` and the parts it is made of; `owners`: owners ranked
    by the mean score of their sites; `owner_kinds`: pooled figures per owner kind. Units of every
    figure are in `units` (shares are 0..1, response times minutes). Without `emergency_id`: the
    latest declared emergency."""
    settings = request.app.state.api.settings
    with _conn(request) as conn:
        emergency_id = emergency_id or _latest_emergency(conn)
        try:
            facts, window = load_site_facts(conn, emergency_id, settings.reading_interval_s)
        except SettlementError as exc:
            raise ApiError(404, "emergency_not_found", str(exc)) from None
    sites, kinds = assess(facts)
    owners = rank_owners(sites, facts)
    mine = _owner_of(who)
    if mine is not None:
        sites = [s for s in sites if s.owner_id == mine]
        owners = [o for o in owners if o.owner_id == mine]
        kinds = []
    items = [{"rank": s.rank, "site_id": s.site_id, "owner_id": s.owner_id, "owner_kind": s.owner_kind,
              "orders": s.orders, "score": s.score, **_figures(s)} for s in sites[offset:offset + limit]]
    return {"emergency_id": emergency_id, "window": _plain(window),
            "weights": WEIGHTS, "units": ASSESSMENT_UNITS,
            "items": items, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(sites) > offset + limit else None,
            "owners": [{"rank": o.rank, "owner_id": o.owner_id, "owner_kind": o.owner_kind, "sites": o.sites,
                        "orders": o.orders, "score": o.score, **_figures(o)} for o in owners],
            "owner_kinds": [{"owner_kind": k.owner_kind, "sites": k.sites, **_figures(k)} for k in kinds]}


# ------------------------------------------------------------------------------ audit plans
class AuditPlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=10_000, description="Sites to draw")
    seed: int | None = Field(default=None, ge=0, le=2**62, description="Random seed; default today as YYYYMMDD")
    grid_cell: Annotated[str | None, Field(max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")] = None


def _plan_out(conn, plan_id: str) -> dict | None:
    rows = _rows(conn, PLANS_SQL, {"id": plan_id})
    if not rows:
        return None
    rows[0]["sites"] = _rows(conn, PLAN_SITES_SQL, {"id": plan_id})
    return rows[0]


@router.get("/audit-plans", response_model=Page, tags=["supervision"], openapi_extra=access("supervisor"),
            summary="Audit plans drawn so far (newest first)")
def audit_plans(request: Request, limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(SUPERVISOR)) -> Page:
    """`total_weight` is the sum of the weights of the `sites_considered` (dimensionless)."""
    with _conn(request) as conn:
        return _page(conn, PLANS_SQL, {"id": None}, limit, offset)


@router.get("/audit-plans/{plan_id}", tags=["supervision"], openapi_extra=access("supervisor"),
            summary="One audit plan: the drawn sites with weights, reasons and the audit since")
def audit_plan(request: Request, plan_id: Id, who: Identity = Depends(SUPERVISOR)) -> dict:
    """Per drawn site: `weight` (dimensionless), `weight_share` 0..1 of the total, `reasons`, and the
    first audit recorded since the draw (`audited_by`, `audited_at`, `audit_passed`; null if none yet)."""
    with _conn(request) as conn:
        plan = _plan_out(conn, plan_id)
    if plan is None:
        raise ApiError(404, "audit_plan_not_found", f"no audit plan {plan_id!r}")
    return plan


@router.post("/audit-plans", tags=["supervision"], openapi_extra=access("supervisor"),
             summary="Draw and keep a risk-weighted audit plan (the drawer is the authenticated user)")
def post_audit_plan(request: Request, body: AuditPlanIn, who: Identity = Depends(SUPERVISOR)) -> JSONResponse:
    """The same draw as `vreserve audit plan`, reproducible from `seed`: 201 with a new plan; 200 with the
    kept one when the same inputs drew the same sites with the same weights (the plan is named by its
    content; `drawn_by` is who drew it first, the audit trail has every draw)."""
    seed = body.seed if body.seed is not None else int(ops.now_ms().strftime("%Y%m%d"))
    _audit(request, body.grid_cell or "", count=body.count, seed=seed)
    with _conn(request) as conn:
        try:
            plan, new = draw_plan(conn, who.actor, body.count, seed, body.grid_cell)
        except NoSitesToDraw as exc:
            raise ApiError(404, "no_sites", str(exc)) from None
        request.state.audit_detail.update(plan_id=plan.plan_id, new=new)
        out = _plan_out(conn, plan.plan_id)
    return JSONResponse(out, 201 if new else 200)



# ---------------------------------------------------------------------------- safety levels
class SafetyLevelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    safety_qty: float = Field(ge=0, le=1e12, description="In the material's unit")


def _level_out(level) -> dict:
    return {"grid_cell": level.grid_cell, "material_id": level.material_id, "safety_qty": level.safety_qty,
            "unit": level.unit, "set_by": level.set_by, "set_at": level.set_at.isoformat()}


@router.get("/safety-levels", tags=["stock"], openapi_extra=access("viewer"),
            summary="Safety levels per grid cell and material (below one: a low_stock alert)")
def safety_levels(request: Request, grid_cell: Filter = None, material_id: Filter = None,
                  who: Identity = Depends(requires("viewer"))) -> dict:
    """`safety_qty` in `unit` (the material's unit); `set_by` the actor who set it."""
    with _conn(request) as conn:
        return {"items": [_level_out(lv) for lv in safety.list_levels(conn, grid_cell, material_id)]}


@router.put("/safety-levels/{grid_cell}/{material_id}", tags=["stock"], openapi_extra=access("supervisor"),
            summary="Set a grid cell's safety level of a material (the same code as `vreserve safety set`)")
def put_safety_level(request: Request, grid_cell: Id, material_id: Id, body: SafetyLevelIn,
                     who: Identity = Depends(SUPERVISOR)) -> dict:
    _audit(request, f"{grid_cell}/{material_id}", safety_qty=body.safety_qty)
    with _conn(request) as conn:
        try:
            return _level_out(safety.set_level(conn, grid_cell, material_id, body.safety_qty, who.actor))
        except ValueError as exc:
            raise ApiError(422, "bad_safety_level", str(exc)) from None


@router.delete("/safety-levels/{grid_cell}/{material_id}", tags=["stock"], openapi_extra=access("supervisor"),
               summary="Remove a safety level (the same code as `vreserve safety remove`)")
def delete_safety_level(request: Request, grid_cell: Id, material_id: Id, who: Identity = Depends(SUPERVISOR)) -> dict:
    _audit(request, f"{grid_cell}/{material_id}")
    with _conn(request) as conn:
        if not safety.remove_level(conn, grid_cell, material_id):
            raise ApiError(404, "safety_level_not_found", f"no safety level for {material_id!r} in {grid_cell!r}")
    return {"grid_cell": grid_cell, "material_id": material_id, "removed": True}
