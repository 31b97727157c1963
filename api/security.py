"""Who is calling, and may they: bearer tokens (people), API tokens (carriers, owners), browser
session cookies with a CSRF header, and the role each route needs (stated in its OpenAPI entry as
``x-required-role`` / ``x-systems``)."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api import timing
from api.errors import ApiError
from vreserve import identity as ident
from vreserve.identity import Identity

SESSION_COOKIE = "vr_session"
CSRF_COOKIE = "vr_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

#: Declares the OAuth2 password flow in OpenAPI (the docs' "Authorize" button); auto_error off so
#: that a missing token is our own 401 with a stable code, and a cookie may stand in for it.
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def current_identity(request: Request, token: str | None = Depends(oauth2)) -> Identity:
    """The authenticated identity of the request; 401 if there is none or it is not valid.

    Async on the event loop (one indexed lookup): no thread hop on the path every request takes."""
    state = request.app.state.api
    with timing.stage(request, "auth"):
        async with state.apool.connection() as conn:
            if token:
                who = await _from_bearer(conn, state.signing_key, token)
            else:
                who = await _from_cookie(conn, state.signing_key, request)
    request.state.identity = who
    return who


async def _from_bearer(conn, key: bytes, token: str) -> Identity:
    if token.startswith("vrt."):
        parsed = ident.parse_api_token(token)
        row = None
        if parsed is not None:
            cur = await conn.execute(ident.TOKEN_SQL, (parsed[0],))
            row = await cur.fetchone()
        who = ident.token_identity_from_row(row, parsed[1]) if row else None
        if who is None:
            raise ApiError(401, "invalid_token", "the API token is unknown, revoked or expired")
        return who
    return await _user_from_session(conn, key, token)


async def _from_cookie(conn, key: bytes, request: Request) -> Identity:
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        raise ApiError(401, "not_authenticated", "log in first (bearer token or session cookie)")
    who = await _user_from_session(conn, key, session)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, ident.csrf_token(key, session)):
            raise ApiError(403, "csrf_failed", f"a write with a session cookie needs the {CSRF_HEADER} header "
                                              f"(the value of the {CSRF_COOKIE} cookie)")
    return who


async def _user_from_session(conn, key: bytes, token: str) -> Identity:
    claims = ident.verify_session(key, token)
    if claims is None:
        raise ApiError(401, "invalid_token", "the token is not valid or has expired; log in again")
    cur = await conn.execute(ident.ACTIVE_ROLE_SQL, (claims["sub"],))
    row = await cur.fetchone()
    role = row[0] if row else None
    if role is None:
        raise ApiError(401, "invalid_token", "the account is disabled or no longer exists")
    return Identity("user", claims["sub"], role)


def authorize(who: Identity, role: str | None, systems: tuple[str, ...] = ()) -> Identity:
    """``who`` if it is a user with at least ``role`` (None: no user) or a system of a kind in
    ``systems``; 403 otherwise."""
    if who.kind == "user" and role is not None and who.has_role(role):
        return who
    if who.kind in systems:
        return who
    needed = (role or "") + (f" (or a {' / '.join(systems)} token)" if systems else "")
    if role is None:
        needed = f"a {' / '.join(systems)} token"
    raise ApiError(403, "forbidden", f"this needs the role {needed}; you are {who.actor}"
                                     + (f" with role {who.role}" if who.role else ""))


def requires(role: str | None, systems: tuple[str, ...] = ()) -> Callable[..., Identity]:
    """A dependency: a user with at least ``role`` (None: no user), or a system of a kind in ``systems``."""

    async def check(who: Identity = Depends(current_identity)) -> Identity:
        return authorize(who, role, systems)

    check.__name__ = f"requires_{role or 'system'}_{'_'.join(systems)}"
    return check


@dataclass(frozen=True)
class Credentials:
    """What a request presents, checked as far as it can be without the database: a user named by
    a valid session (bearer or cookie), or an API token's id and secret. :func:`lookup_identity`
    finishes the check from the rows an :data:`IDENTITY_COLUMNS` query returns, so a hot route can
    fold the identity into its own query (one round trip instead of two)."""

    user: str | None = None
    token_id: str | None = None
    secret: str | None = None


def credentials(request: Request, token: str | None) -> Credentials:
    """Parse the bearer token or the session cookie of a read (GET); 401 if absent or not valid."""
    key = request.app.state.api.signing_key
    if token and token.startswith("vrt."):
        parsed = ident.parse_api_token(token)
        if parsed is None:
            raise ApiError(401, "invalid_token", "the API token is unknown, revoked or expired")
        return Credentials(token_id=parsed[0], secret=parsed[1])
    session = token or request.cookies.get(SESSION_COOKIE)
    if not session:
        raise ApiError(401, "not_authenticated", "log in first (bearer token or session cookie)")
    claims = ident.verify_session(key, session)
    if claims is None:
        raise ApiError(401, "invalid_token", "the token is not valid or has expired; log in again")
    return Credentials(user=claims["sub"])


#: Four columns to put first in a query given ``%(user)s`` and ``%(token_id)s`` (see IDENTITY_JOINS).
IDENTITY_COLUMNS = "u.role, t.kind, t.subject, t.secret_hash"
#: Joins (on a one-row FROM) that give IDENTITY_COLUMNS for the request's credentials.
IDENTITY_JOINS = ("LEFT JOIN api_users u ON u.name = %(user)s AND NOT u.disabled"
                  " LEFT JOIN api_tokens t ON t.token_id = %(token_id)s AND t.revoked_at IS NULL"
                  " AND t.expires_at > now()")


def lookup_identity(request: Request, creds: Credentials, row) -> Identity:
    """The identity from a row whose first columns are IDENTITY_COLUMNS; 401 if there is none."""
    if creds.token_id is not None:
        who = ident.token_identity_from_row(row[1:4], creds.secret or "") if row[1] is not None else None
        if who is None:
            raise ApiError(401, "invalid_token", "the API token is unknown, revoked or expired")
    elif row[0] is None:
        raise ApiError(401, "invalid_token", "the account is disabled or no longer exists")
    else:
        who = Identity("user", creds.user or "", row[0])
    request.state.identity = who
    return who


def access(role: str, systems: tuple[str, ...] = ()) -> dict:
    """OpenAPI extension fields stating who may call a route."""
    return {"x-required-role": role, "x-systems": list(systems)}


