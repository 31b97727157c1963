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

from fastapi import APIRouter, Depends, Query, Request
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


# ---------------------------------------------------------------------------- reserve balance
BALANCE_UNITS = {
    "target": "the material's `unit`: `days` x the scenario's expected daily demand, spread over the cells by sites",
    "covered": "the material's `unit`: sum of min(reported, committed) x trust over the cell's active sites",
    "coverage_days": "days of expected demand the covered stock lasts (null when the cell has no demand)",
    "raises": "per site: `qty` in the material's `unit` to add to its committed stock, `fee_minor_per_day` "
              "minor units of `currency` per day (its contract's standby fee per unit and day x qty; may be fractional)",
    "procure": "the material's `unit`: what no owner holds and must be bought",
}
_PACK = Annotated[str, Query(max_length=64, pattern=r"^[a-z0-9_-]+$", description="A scenario pack name (e.g. wuhan)")]


@router.get("/reserve/balance", tags=["supervision"], openapi_extra=access("supervisor"),
            summary="Normal times: coverage per grid cell and material against days of a scenario's demand, "
                    "with the suggested rebalancing (`vreserve reserve balance`)")
def reserve_balance(request: Request, region: Annotated[str, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
                    = "wuhan", scenario: _PACK = "wuhan",
                    days: Annotated[float, Query(gt=0, le=365, description="Target: days of expected demand")] = 3.0,
                    procurement_factor: Annotated[float, Query(ge=0, le=1000, description="Procurement price = the "
                                                               "scenario's price x this")] = 2.0,
                    grid_cell: Filter = None, material: Filter = None,
                    under_target: Annotated[bool, Query(description="Only the pairs under target (as the CLI "
                                                                    "without --all-cells)")] = True,
                    limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(SUPERVISOR)) -> dict:
    """Per (grid cell, material): `target`, `covered`, `coverage_days`, `under_target`, the owners'
    stock to raise (`raises`, cheapest standby fee first, never beyond what a site holds) and what to
    `procure`, solved as a small LP by the same code as the CLI (vreserve/reserve_balance.py). Read-only:
    a suggestion, nothing is changed. Each item carries its cell's mean position (`lat`/`lon`, degrees).
    Supervisors only: it names owners with the money they would be paid, and every call solves the LP.
    404 `region_not_found` for a region without sites; 422 `unknown_scenario` for a name that is no pack."""
    from vreserve.reserve_balance import BalanceError, region_balance
    from vreserve.scenario import known_packs

    if scenario not in known_packs():
        raise ApiError(422, "unknown_scenario", f"no scenario pack {scenario!r} (packs: {', '.join(known_packs())})",
                       fields=[{"field": "query.scenario", "reason": "not a scenario pack"}])
    with _conn(request) as conn:
        try:
            result = region_balance(conn, region, scenario, days, procurement_factor)
        except BalanceError as exc:
            if not conn.execute("SELECT 1 FROM sites WHERE region = %s LIMIT 1", (region,)).fetchone():
                raise ApiError(404, "region_not_found", str(exc)) from None
            raise ApiError(422, "bad_scenario", str(exc)) from None
        except RuntimeError as exc:  # the LP did not end optimal: say so, suggest nothing
            raise ApiError(503, "balance_not_solved", str(exc)) from None
    rows = [r for r in result.rows if (not under_target or r.under_target)
            and grid_cell in (None, r.grid_cell) and material in (None, r.material_id)]
    items = [{**r.to_dict(), "lat": result.where[r.grid_cell][0], "lon": result.where[r.grid_cell][1]}
             for r in rows[offset:offset + limit]]
    return {"region": region, "scenario": scenario, "days": days, "procurement_factor": procurement_factor,
            "currency": request.app.state.api.settings.currency, "units": BALANCE_UNITS,
            "pairs": len(result.rows), "pairs_under_target": result.under,
            "items": items, "limit": limit, "offset": offset,
            "next_offset": offset + limit if len(rows) > offset + limit else None}
