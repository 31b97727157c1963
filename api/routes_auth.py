"""Logging in: OAuth2 password flow for a bearer token, or a browser session cookie (+ CSRF token)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel

from api.errors import ApiError
from api.security import CSRF_COOKIE, SESSION_COOKIE, access, current_identity
from vreserve import identity as ident
from vreserve.identity import Identity

router = APIRouter(tags=["auth"])

Name = Annotated[str, Form(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
Password = Annotated[str, Form(min_length=1, max_length=1024)]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in_s: int
    role: str


class SessionOut(BaseModel):
    user: str
    role: str
    csrf_token: str
    expires_in_s: int


class MeOut(BaseModel):
    actor: str
    kind: str
    name: str
    role: str | None


def _login(request: Request, username: str, password: str) -> Identity:
    request.state.claimed = username
    with request.app.state.api.pool.connection() as conn:
        result = ident.authenticate(conn, username, password)
    if result.identity is None:
        if result.reason == "locked":
            raise ApiError(429, "account_locked", f"too many failed logins; the account is locked for "
                                                  f"{int(ident.LOCKOUT.total_seconds() // 60)} min")
        raise ApiError(401, "bad_credentials", "wrong user name or password (or the account is disabled)")
    request.state.identity = result.identity
    return result.identity


@router.post("/auth/token", response_model=TokenOut, openapi_extra=access("public"),
             summary="Log in (OAuth2 password flow) for a bearer token")
def token(request: Request, username: Name, password: Password) -> TokenOut:
    """Form fields `username`, `password`. Five failed logins in a row lock the account for 15 min."""
    who = _login(request, username, password)
    return TokenOut(access_token=ident.sign_session(request.app.state.api.signing_key, who.name),
                    expires_in_s=ident.TOKEN_TTL_S, role=who.role or "")


@router.post("/auth/session", response_model=SessionOut, openapi_extra=access("public"),
             summary="Log in a browser: session cookie + CSRF token")
def session(request: Request, response: Response, username: Name, password: Password) -> SessionOut:
    """Sets `vr_session` (HttpOnly, Secure, SameSite=Strict) and `vr_csrf` (readable by the page).
    Every write with the cookie must send the CSRF value in the `X-CSRF-Token` header."""
    who = _login(request, username, password)
    key = request.app.state.api.signing_key
    session_token = ident.sign_session(key, who.name)
    csrf = ident.csrf_token(key, session_token)
    ttl = ident.TOKEN_TTL_S
    response.set_cookie(SESSION_COOKIE, session_token, max_age=ttl, httponly=True, secure=True, samesite="strict",
                        path="/api")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=ttl, httponly=False, secure=True, samesite="strict", path="/")
    return SessionOut(user=who.name, role=who.role or "", csrf_token=csrf, expires_in_s=ttl)


@router.post("/auth/logout", status_code=204, openapi_extra=access("public"), summary="End a browser session")
def logout(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/api")
    response.delete_cookie(CSRF_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=MeOut, openapi_extra=access("viewer", ("carrier", "owner")),
            summary="Who am I")
def me(who: Identity = Depends(current_identity)) -> MeOut:
    return MeOut(actor=who.actor, kind=who.kind, name=who.name, role=who.role)
