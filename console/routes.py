"""The console's HTTP surface: the static pages at ``/`` and the read routes the pages need beyond the
HTTP API (``/api/v1/console/...``). Mounted by the API with one call to :func:`mount_console`, which
hands in the API's own dependencies (who is asking, with which role; a database connection), so
every console route is authenticated and authorised exactly like the API's own.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from console import overview
from console.flows import read_flows
from console.live import LiveHub
from vreserve.ideal_shortage import PreviewError, emergency_ideal, ideal_shortage_preview
from console.site_status import read_status_changes
from vreserve import db_access
from vreserve.operations import Refused
from vreserve.settings import Settings

CONSOLE_DIR = Path(__file__).resolve().parent
STATIC_DIR = CONSOLE_DIR / "static"
NODE_MODULES = CONSOLE_DIR / "node_modules"
#: Front-end libraries served from the npm packages installed at build time (console/package.json).
VENDOR = {"leaflet": NODE_MODULES / "leaflet" / "dist", "uplot": NODE_MODULES / "uplot" / "dist"}
#: The worker's staleness rule (stream/options.py): no reading for this many reading intervals.
STALE_INTERVALS = 3.0
#: Who may call each route, stated in OpenAPI the way the API's own routes state it.
VIEWER_ONLY = {"x-required-role": "viewer", "x-systems": []}
OPERATOR_ONLY = {"x-required-role": "operator", "x-systems": []}

MISSING_BUILD = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vreserve console</title></head>
<body><main><h1>vreserve console: front-end libraries not installed</h1>
<p>Run <code>npm ci --prefix console</code> (deploy/bootstrap.sh does it) and reload.</p></main></body></html>"""


class PreviewRequest(BaseModel):
    region: str = Field(min_length=1, max_length=64)
    demand_source: str = Field(min_length=1, max_length=256, description="demand pack name or uploaded file id")
    periods: int = Field(ge=1, le=1000)
    demand_scale: float = Field(default=1.0, gt=0, le=1000)


def pooled_connection(request: Request) -> Iterator[Any]:
    """A connection from the API's pool (``app.state.api.pool``), returned after the request."""
    with request.app.state.api.pool.connection() as conn:
        yield conn


def mount_console(app: FastAPI, settings: Settings, viewer: Callable, operator: Callable,
                  connection: Callable = pooled_connection) -> None:
    """Serve the console at ``/`` and its read routes; ``viewer`` / ``operator`` are the API's
    role dependencies, ``connection`` yields a database connection."""
    hub = LiveHub(settings.pg_dsn_for(db_access.API))
    app.state.console_hub = hub
    for name, folder in VENDOR.items():
        if folder.is_dir():
            app.mount(f"/console/vendor/{name}", StaticFiles(directory=folder), name=f"console-vendor-{name}")
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(_pages())
    app.include_router(_api(settings, hub, viewer, operator, connection), prefix="/api/v1/console")


def _pages() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> Any:
        if not all(folder.is_dir() for folder in VENDOR.values()):
            return HTMLResponse(MISSING_BUILD, status_code=503)
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return router


def _api(settings: Settings, hub: LiveHub, viewer: Callable, operator: Callable, connection: Callable) -> APIRouter:
    router = APIRouter(tags=["console"])
    stale_after_s = STALE_INTERVALS * settings.reading_interval_s
    demand_dir = settings.state_dir / "api-demand"  # where the API keeps uploaded demand files

    @router.get("/config", openapi_extra=VIEWER_ONLY, summary="Console settings (role: viewer)")
    def config(who=Depends(viewer)) -> dict:
        return {"tile_url": getattr(settings, "map_tile_url", ""), "currency": getattr(settings, "currency", "CNY"),
                "stale_after_s": stale_after_s, "reading_interval_s": settings.reading_interval_s}

    @router.get("/overview", openapi_extra=VIEWER_ONLY, summary="Grid cells with coverage, site counts, alerts, modes (role: viewer)")
    def get_overview(who=Depends(viewer), conn=Depends(connection)) -> dict:
        return overview.read_overview(conn, stale_after_s, book=hub.current_book())

    @router.get("/sites", openapi_extra=VIEWER_ONLY, summary="Every site as a compact row for the map (role: viewer)")
    def get_sites(who=Depends(viewer), conn=Depends(connection)) -> dict:
        return {"columns": ["site_id", "owner_kind", "tier", "lat", "lon", "status", "grid_cell", "last_reading_epoch_s"],
                "rows": overview.read_sites(conn), "generated_at": time.time()}

    @router.get("/sites/{site_id}/history", openapi_extra=VIEWER_ONLY, summary="A site's hourly stock, last N days (role: viewer)")
    def site_history(site_id: str, days: int = 30, who=Depends(viewer), conn=Depends(connection)) -> dict:
        if not 1 <= days <= 90:
            raise Refused("validation_error", "days: must be 1..90", 422)
        if not conn.execute("SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone():
            raise Refused("site_not_found", f"no site {site_id!r}", 404)
        return overview.read_site_history(conn, site_id, days)

    @router.get("/sites/{site_id}/status-changes", openapi_extra=VIEWER_ONLY,
                summary="Who suspended / reinstated a site, when and why (role: viewer)")
    def status_changes(site_id: str, who=Depends(viewer), conn=Depends(connection)) -> dict:
        """From the audit trail's accepted `POST /sites/{id}/suspend|reinstate` requests, newest first."""
        if not conn.execute("SELECT 1 FROM sites WHERE site_id = %s", (site_id,)).fetchone():
            raise Refused("site_not_found", f"no site {site_id!r}", 404)
        return {"site_id": site_id, "items": read_status_changes(conn, site_id)}

    @router.get("/events", openapi_extra=VIEWER_ONLY, summary="Live events: stock, alerts, modes, plans, orders (role: viewer)")
    async def events(request: Request, who=Depends(viewer)) -> StreamingResponse:
        """`text/event-stream` (send `Accept: text/event-stream`, as EventSource does); event types
        `stock`, `alerts`, `mode`, `plans`, `orders` with JSON data (console/live.py)."""
        if "text/event-stream" not in request.headers.get("accept", ""):
            raise Refused("not_acceptable", "this route is a server-sent event stream: send Accept: text/event-stream", 406)
        return StreamingResponse(hub.subscribe(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.post("/declare-preview", openapi_extra=OPERATOR_ONLY, summary="Ideal shortage of a declaration, before publishing (role: operator)")
    def declare_preview(body: PreviewRequest, who=Depends(operator), conn=Depends(connection)) -> dict:
        try:
            return ideal_shortage_preview(conn, body.region, body.demand_source, body.periods, body.demand_scale,
                                          demand_dir)
        except PreviewError as exc:
            raise Refused(exc.code, str(exc), 422) from None

    @router.get("/emergencies/{emergency_id}/ideal", openapi_extra=VIEWER_ONLY, summary="Ideal shortage per material of an emergency (role: viewer)")
    def ideal(emergency_id: str, who=Depends(viewer), conn=Depends(connection)) -> dict:
        try:
            found = emergency_ideal(conn, emergency_id, demand_dir)
        except PreviewError as exc:
            raise Refused(exc.code, str(exc), 404) from None
        return found or {"emergency_id": emergency_id, "materials": {}, "notes": ["no plan yet"]}

    @router.get("/emergencies/{emergency_id}/flows", openapi_extra=VIEWER_ONLY,
                summary="Flows of an emergency's plan for the map: site -> distribution centre -> rescue centre (role: viewer)")
    def flows(emergency_id: str, period: int | None = None, who=Depends(viewer), conn=Depends(connection)) -> dict:
        """Arcs with their planned quantity per material (in `unit`) of the plan of `period` (default the
        latest planned period), the positions of their ends (degrees), and what could not be placed."""
        if period is not None and not 1 <= period <= 100_000:
            raise Refused("validation_error", "period: must be 1..100000", 422)
        if not conn.execute("SELECT 1 FROM emergencies WHERE emergency_id = %s", (emergency_id,)).fetchone():
            raise Refused("emergency_not_found", f"no emergency {emergency_id!r}", 404)
        found = read_flows(conn, emergency_id, period)
        return found or {"emergency_id": emergency_id, "plan_id": None, "period": period, "flows": [], "places": {},
                         "unplaced": {"flows": 0, "qty_by_material": {}, "ends_without_position": []}}

    return router
