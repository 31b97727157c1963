"""Administration (role admin): people, carriers, API tokens, and the audit trail."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import webhooks as wh
from api.errors import ApiError
from api.routes_read import Limit, Offset, Page, _plain
from api.routes_write import uploaded_file
from api.security import access, requires
from vreserve import auditlog
from vreserve import identity as ident
from vreserve.registry import RegistryError, registry_from_text
from vreserve import webhooks as alert_hooks
from vreserve.identity import Identity
from vreserve.registry_store import store_registry

router = APIRouter(tags=["admin"])
ADMIN = requires("admin")
_NAME = r"^[A-Za-z0-9._@-]+$"
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME)]
PathName = Annotated[str, Path(min_length=1, max_length=64, pattern=_NAME)]


def _conn(request: Request):
    return request.app.state.api.pool.connection()


def _audit(request: Request, target: str, **detail) -> None:
    request.state.audit_target = target
    request.state.audit_detail = detail


def _listing(items: list[dict], limit: int, offset: int) -> Page:
    page = [_plain(i) for i in items[offset:offset + limit]]
    return Page(items=page, limit=limit, offset=offset, next_offset=offset + limit if len(items) > offset + limit else None)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    role: Literal["viewer", "operator", "supervisor", "admin"]
    password: str = Field(min_length=ident.MIN_PASSWORD_LEN, max_length=1024)


@router.get("/users", response_model=Page, openapi_extra=access("admin"), summary="People who may log in")
def users(request: Request, limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(ADMIN)) -> Page:
    with _conn(request) as conn:
        return _listing(ident.list_users(conn), limit, offset)


@router.post("/users", status_code=201, openapi_extra=access("admin"), summary="Add a person")
def add_user(request: Request, body: UserIn, who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, body.name, role=body.role)
    with _conn(request) as conn:
        try:
            ident.add_user(conn, body.name, body.role, body.password, who.actor)
        except ident.IdentityError as exc:
            raise ApiError(409, "user_rejected", str(exc)) from None
    return {"name": body.name, "role": body.role}


@router.post("/users/{name}/disable", openapi_extra=access("admin"), summary="Disable a person's account")
def disable_user(request: Request, name: PathName, who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, name)
    with _conn(request) as conn:
        try:
            ident.set_disabled(conn, name, True)
        except ident.IdentityError as exc:
            raise ApiError(404, "user_not_found", str(exc)) from None
    return {"name": name, "disabled": True}


class CarrierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier_id: Name
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    regions: list[Name] = Field(min_length=1, max_length=100, description="Regions whose orders it carries")


@router.get("/carriers", response_model=Page, openapi_extra=access("admin"), summary="Carriers and their routes")
def carriers(request: Request, limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(ADMIN)) -> Page:
    with _conn(request) as conn:
        rows = conn.execute("SELECT carrier_id, name, regions, created_at FROM carriers ORDER BY carrier_id").fetchall()
    return _listing([dict(zip(("carrier_id", "name", "regions", "created_at"), r)) for r in rows], limit, offset)


@router.post("/carriers", status_code=201, openapi_extra=access("admin"), summary="Add or update a carrier")
def add_carrier(request: Request, body: CarrierIn, who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, body.carrier_id, regions=body.regions)
    with _conn(request) as conn:
        ident.add_carrier(conn, body.carrier_id, body.name, body.regions)
    return body.model_dump()


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["carrier", "owner"]
    subject: Name = Field(description="carrier_id or owner_id")
    expires_at: datetime


@router.get("/tokens", response_model=Page, openapi_extra=access("admin"), summary="API tokens (never their secrets)")
def tokens(request: Request, limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(ADMIN)) -> Page:
    with _conn(request) as conn:
        return _listing(ident.list_tokens(conn), limit, offset)


@router.post("/tokens", status_code=201, openapi_extra=access("admin"),
             summary="Issue an API token for a carrier or owner (the secret is shown once)")
def issue(request: Request, body: TokenIn, who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, f"{body.kind}:{body.subject}")
    if body.expires_at.tzinfo is None:
        raise ApiError(422, "validation_error", "expires_at: give a time zone")
    if body.expires_at.year > 9000:
        raise ApiError(422, "validation_error", "expires_at: too far in the future")
    with _conn(request) as conn:
        try:
            token_id, secret = ident.issue_token(conn, body.kind, body.subject, body.expires_at, who.actor)
        except ident.IdentityError as exc:
            raise ApiError(422, "token_rejected", str(exc)) from None
    request.state.audit_detail["token_id"] = token_id
    return {"token_id": token_id, "token": secret, "kind": body.kind, "subject": body.subject,
            "expires_at": body.expires_at.astimezone(timezone.utc).isoformat()}


@router.post("/tokens/{token_id}/revoke", openapi_extra=access("admin"), summary="Revoke an API token")
def revoke(request: Request, token_id: Annotated[str, Path(max_length=64, pattern=r"^tok_[0-9a-f]+$")],
           who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, token_id)
    with _conn(request) as conn:
        try:
            ident.revoke_token(conn, token_id)
        except ident.IdentityError as exc:
            raise ApiError(404, "token_not_found", str(exc)) from None
    return {"token_id": token_id, "revoked": True}


@router.get("/audit-log", response_model=Page, openapi_extra=access("admin"),
            summary="The audit trail, newest first")
def audit_log(request: Request, actor: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")] = None,
              limit: Limit = 100, offset: Offset = 0, who: Identity = Depends(ADMIN)) -> Page:
    with _conn(request) as conn:
        rows = auditlog.recent(conn, limit + 1, offset, actor)
    return Page(items=[_plain(r) for r in rows[:limit]], limit=limit, offset=offset,
                next_offset=offset + limit if len(rows) > limit else None)


@router.get("/audit-log/verify", openapi_extra=access("admin"), summary="Prove the audit trail's hash chain")
def audit_verify(request: Request, who: Identity = Depends(ADMIN)) -> dict:
    with _conn(request) as conn:
        r = auditlog.verify(conn)
    return {"rows": r.rows, "ok": r.ok, "first_bad_seq": r.first_bad_seq, "problem": r.problem}


# -------------------------------------------------------------------------------- webhooks
class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")


@router.post("/webhooks", status_code=201, tags=["webhooks"], openapi_extra=access("carrier-only", ("carrier",)),
             summary="A carrier registers its webhook URL (returns the signing secret once)")
def register_webhook(request: Request, body: WebhookIn, who: Identity = Depends(requires(None, ("carrier",)))) -> dict:
    _audit(request, who.name, url=body.url)
    with _conn(request) as conn:
        secret = wh.register(conn, who.name, body.url, who.actor)
    return {"carrier_id": who.name, "url": body.url, "secret": secret, "signature_header": wh.SIGNATURE_HEADER}


@router.put("/carriers/{carrier_id}/webhook", tags=["webhooks"], openapi_extra=access("admin"),
            summary="Set a carrier's webhook URL on its behalf (returns the signing secret once)")
def set_carrier_webhook(request: Request, carrier_id: PathName, body: WebhookIn,
                        who: Identity = Depends(ADMIN)) -> dict:
    """What `vreserve carrier-webhooks register CARRIER URL` does from the shell, for an admin
    setting up a carrier that has no API token yet; the same `api.webhooks.register`. A carrier
    registers its own with `POST /webhooks`. Unknown carrier: 404 `carrier_not_found`."""
    _audit(request, carrier_id, url=body.url)
    with _conn(request) as conn:
        if not conn.execute("SELECT 1 FROM carriers WHERE carrier_id = %s", (carrier_id,)).fetchone():
            raise ApiError(404, "carrier_not_found", f"no carrier {carrier_id!r}")
        secret = wh.register(conn, carrier_id, body.url, who.actor)
    return {"carrier_id": carrier_id, "url": body.url, "secret": secret, "signature_header": wh.SIGNATURE_HEADER}


@router.get("/webhooks/held", response_model=Page, tags=["webhooks"], openapi_extra=access("operator"),
            summary="Carriers whose deliveries are held after repeated failures")
def held_webhooks(request: Request, limit: Limit = 100, offset: Offset = 0,
                  who: Identity = Depends(requires("operator"))) -> Page:
    with _conn(request) as conn:
        return _listing(wh.held(conn), limit, offset)


@router.post("/webhooks/{carrier_id}/release", tags=["webhooks"], openapi_extra=access("operator"),
             summary="Resume a held carrier's deliveries, in order")
def release_webhook(request: Request, carrier_id: PathName, who: Identity = Depends(requires("operator"))) -> dict:
    _audit(request, carrier_id)
    with _conn(request) as conn:
        try:
            n = wh.release(conn, carrier_id)
        except LookupError as exc:
            raise ApiError(404, "not_held", str(exc)) from None
    return {"carrier_id": carrier_id, "due_again": n}


# ----------------------------------------------------------------------------- alert webhooks
class AlertWebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_id: Name
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\x00-\x20\x7f]+$")
    secret: str = Field(min_length=16, max_length=512, description="Shared HMAC secret (never shown again)")
    min_severity: Literal["info", "warning", "critical"] = "critical"


@router.get("/alert-webhooks", openapi_extra=access("admin"), summary="Webhooks that receive alerts (never their secret)")
def alert_webhooks(request: Request, who: Identity = Depends(ADMIN)) -> dict:
    with request.app.state.api.pool.connection() as conn:
        hooks = alert_hooks.list_webhooks(conn)
    return {"items": [{"webhook_id": h.webhook_id, "url": h.url, "min_severity": h.min_severity, "active": h.active,
                       "created_by": h.created_by, "created_at": h.created_at.isoformat()} for h in hooks]}


@router.post("/alert-webhooks", status_code=201, openapi_extra=access("admin"),
             summary="Register a webhook for alerts at or above a severity (the same code as `vreserve webhooks add`)")
def post_alert_webhook(request: Request, body: AlertWebhookIn, who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, body.webhook_id, url=body.url, min_severity=body.min_severity)
    with request.app.state.api.pool.connection() as conn:
        try:
            alert_hooks.add_webhook(conn, body.webhook_id, body.url, body.secret.encode(), who.actor, body.min_severity)
        except ValueError as exc:
            raise ApiError(422, "bad_webhook", str(exc)) from None
        except psycopg.errors.UniqueViolation:
            raise ApiError(409, "webhook_exists", f"webhook {body.webhook_id!r} exists; remove it first") from None
    return {"webhook_id": body.webhook_id, "url": body.url, "min_severity": body.min_severity,
            "created_by": who.actor}


@router.delete("/alert-webhooks/{webhook_id}", openapi_extra=access("admin"),
               summary="Remove an alert webhook (the same code as `vreserve webhooks remove`)")
def delete_alert_webhook(request: Request, webhook_id: Annotated[str, Path(max_length=64, pattern=_NAME)],
                         who: Identity = Depends(ADMIN)) -> dict:
    _audit(request, webhook_id)
    with request.app.state.api.pool.connection() as conn:
        if not alert_hooks.remove_webhook(conn, webhook_id):
            raise ApiError(404, "webhook_not_found", f"no alert webhook {webhook_id!r}")
    return {"webhook_id": webhook_id, "removed": True}


# -------------------------------------------------------------------------------- registry
REGISTRY_FORM = {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
    "file": {"type": "string", "format": "binary",
             "description": "A registry file as for `vreserve registry load` (YAML or JSON; docs/ingest.md)"}}}}}


@router.post("/registry", status_code=201, openapi_extra={**access("admin"),
             "requestBody": {"required": True, "content": REGISTRY_FORM}},
             summary="Load a registry file (multipart): validate, then upsert materials, sites and contracts")
async def post_registry(request: Request, who: Identity = Depends(ADMIN)) -> dict:
    """The same reading, checks and upsert as `vreserve registry load FILE` (vreserve/registry.py,
    vreserve/registry_store.py): all or nothing, a 422 `bad_registry` with the reason, nothing
    stored. Rows absent from the file are left alone. The request body limit (2 MiB) bounds the
    file: a registry larger than a few thousand sites is loaded with the CLI."""

    request.state.audit_target = "registry"
    request.state.audit_detail = {}
    upload = await uploaded_file(request, "registry file")
    name = (upload.filename or "registry").rsplit("/", 1)[-1][:200]
    request.state.audit_target = f"registry {name}"
    try:
        text = (await upload.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "bad_registry", f"{name}: not UTF-8 text") from None

    def load() -> dict:
        try:
            reg = registry_from_text(text, name)
            with request.app.state.api.pool.connection() as conn:
                counts = store_registry(conn, reg)
        except RegistryError as exc:
            raise ApiError(422, "bad_registry", str(exc)) from None
        request.state.audit_detail.update(sites=len(reg.sites), materials=len(reg.materials))
        return {"sites": len(reg.sites), "materials": len(reg.materials), "stored_rows": counts}
    return await run_in_threadpool(load)
