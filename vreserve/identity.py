"""Who may act: people (argon2id passwords, roles), systems (hashed API tokens for carriers and
owners), and the installation's signing key for bearer tokens and session cookies.

Shared by the HTTP API (api/) and the CLI (`vreserve users|tokens`), so it lives in vreserve/.
Nothing here keeps a secret in code: the signing key is random, generated on first use and kept
in the database (every API instance reads the same one, so they stay stateless).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Roles, weakest first: each role may do everything the ones before it may.
ROLES = ("viewer", "operator", "supervisor", "admin")
SYSTEM_KINDS = ("carrier", "owner")
#: Failed logins in a row before an account is locked, and for how long.
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
#: Lifetime of a bearer token / browser session, seconds.
TOKEN_TTL_S = 3600
MIN_PASSWORD_LEN = 10

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
#: A valid hash of a random password: checked when the user does not exist, so that the time a
#: failed login takes does not say whether the account exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class IdentityError(Exception):
    """A request about identities that cannot be done (unknown user, bad role, weak password)."""


@dataclass(frozen=True)
class Identity:
    """The authenticated actor of a request: a person with a role, or a system (carrier / owner)."""

    kind: str           # 'user', 'carrier', 'owner', 'os-user' (the CLI)
    name: str           # user name, carrier id, owner id, OS user
    role: str | None    # users (and the CLI: admin); None for systems

    @property
    def actor(self) -> str:
        """How the actor is written on mode events, audits, statuses and the audit trail."""
        return f"{self.kind}:{self.name}"

    def has_role(self, role: str) -> bool:
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(role)


def role_at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


# ----------------------------------------------------------------------------------- people
def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise IdentityError(f"password too short: at least {MIN_PASSWORD_LEN} characters")


def add_user(conn, name: str, role: str, password: str, created_by: str) -> None:
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    check_password_strength(password)
    row = conn.execute("SELECT 1 FROM api_users WHERE name = %s", (name,)).fetchone()
    if row:
        raise IdentityError(f"user {name!r} exists already")
    try:
        conn.execute("INSERT INTO api_users (name, role, password_hash, created_by) VALUES (%s,%s,%s,%s)",
                     (name, role, _hasher.hash(password), created_by))
    except Exception as exc:  # psycopg CheckViolation: say which rule
        if "api_users_name_check" in str(exc):
            raise IdentityError("user name: 1-64 of letters, digits, . _ @ -") from None
        raise


def list_users(conn) -> list[dict]:
    rows = conn.execute("SELECT name, role, disabled, failed_logins, locked_until, created_at, created_by"
                        " FROM api_users ORDER BY name").fetchall()
    keys = ("name", "role", "disabled", "failed_logins", "locked_until", "created_at", "created_by")
    return [dict(zip(keys, r)) for r in rows]


def set_disabled(conn, name: str, disabled: bool = True) -> None:
    cur = conn.execute("UPDATE api_users SET disabled = %s WHERE name = %s", (disabled, name))
    if cur.rowcount == 0:
        raise IdentityError(f"unknown user {name!r}")


@dataclass(frozen=True)
class LoginResult:
    identity: Identity | None
    reason: str | None = None     # 'bad_credentials', 'locked', 'disabled'


def authenticate(conn, name: str, password: str, now: datetime | None = None) -> LoginResult:
    """Check a password; count failures and lock the account after MAX_FAILED_LOGINS in a row."""
    now = now or datetime.now(timezone.utc)
    with conn.transaction():
        row = conn.execute("SELECT role, password_hash, disabled, failed_logins, locked_until FROM api_users"
                           " WHERE name = %s FOR UPDATE", (name,)).fetchone()
        if row is None:
            _verify(_DUMMY_HASH, password)
            return LoginResult(None, "bad_credentials")
        role, pw_hash, disabled, failed, locked_until = row
        if locked_until is not None and locked_until > now:
            return LoginResult(None, "locked")
        ok = _verify(pw_hash, password)
        if ok and disabled:
            return LoginResult(None, "disabled")
        if not ok:
            failed += 1
            lock = now + LOCKOUT if failed >= MAX_FAILED_LOGINS else None
            conn.execute("UPDATE api_users SET failed_logins = %s, locked_until = %s WHERE name = %s",
                         (0 if lock else failed, lock, name))
            return LoginResult(None, "locked" if lock else "bad_credentials")
        if failed or locked_until is not None:
            conn.execute("UPDATE api_users SET failed_logins = 0, locked_until = NULL WHERE name = %s", (name,))
        if _hasher.check_needs_rehash(pw_hash):
            conn.execute("UPDATE api_users SET password_hash = %s WHERE name = %s", (_hasher.hash(password), name))
    return LoginResult(Identity("user", name, role))


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(pw_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


ACTIVE_ROLE_SQL = "SELECT role FROM api_users WHERE name = %s AND NOT disabled"


def active_user_role(conn, name: str) -> str | None:
    """The role of an enabled user, None if unknown or disabled (checked on every request)."""
    row = conn.execute(ACTIVE_ROLE_SQL, (name,)).fetchone()
    return row[0] if row else None


# ----------------------------------------------------------------------------------- systems
def add_carrier(conn, carrier_id: str, name: str, regions: list[str]) -> None:
    conn.execute("INSERT INTO carriers (carrier_id, name, regions) VALUES (%s,%s,%s)"
                 " ON CONFLICT (carrier_id) DO UPDATE SET name = EXCLUDED.name, regions = EXCLUDED.regions",
                 (carrier_id, name, regions))


def issue_token(conn, kind: str, subject: str, expires_at: datetime, created_by: str) -> tuple[str, str]:
    """A new API token for a carrier or an owner: (token_id, the secret token shown once)."""
    if kind not in SYSTEM_KINDS:
        raise IdentityError(f"token kind must be one of {SYSTEM_KINDS}")
    if kind == "carrier":
        if not conn.execute("SELECT 1 FROM carriers WHERE carrier_id = %s", (subject,)).fetchone():
            raise IdentityError(f"unknown carrier {subject!r} (add it with `vreserve carriers add`)")
    elif not conn.execute("SELECT 1 FROM sites WHERE owner_id = %s LIMIT 1", (subject,)).fetchone():
        raise IdentityError(f"unknown owner {subject!r}: no site of the registry belongs to it")
    if expires_at <= datetime.now(timezone.utc):
        raise IdentityError("expiry must be in the future")
    token_id = "tok_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_tokens (token_id, kind, subject, secret_hash, expires_at, created_by)"
                 " VALUES (%s,%s,%s,%s,%s,%s)", (token_id, kind, subject, _sha256(secret), expires_at, created_by))
    return token_id, f"vrt.{token_id}.{secret}"


def revoke_token(conn, token_id: str) -> None:
    cur = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL",
                       (token_id,))
    if cur.rowcount == 0:
        raise IdentityError(f"no active token {token_id!r}")


def list_tokens(conn) -> list[dict]:
    keys = ("token_id", "kind", "subject", "expires_at", "revoked_at", "created_at", "created_by")
    rows = conn.execute(f"SELECT {', '.join(keys)} FROM api_tokens ORDER BY created_at").fetchall()
    return [dict(zip(keys, r)) for r in rows]


TOKEN_SQL = ("SELECT kind, subject, secret_hash FROM api_tokens WHERE token_id = %s"
             " AND revoked_at IS NULL AND expires_at > now()")


def parse_api_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret) of a ``vrt.<id>.<secret>`` token, None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "vrt" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def token_identity_from_row(row, secret: str) -> Identity | None:
    """Check the secret against the stored hash of a TOKEN_SQL row (constant time)."""
    if row is None or not hmac.compare_digest(row[2], _sha256(secret)):
        return None
    return Identity(row[0], row[1], None)


def token_identity(conn, token: str) -> Identity | None:
    """The system behind an API token, None if malformed, unknown, revoked or expired."""
    parsed = parse_api_token(token)
    if parsed is None:
        return None
    return token_identity_from_row(conn.execute(TOKEN_SQL, (parsed[0],)).fetchone(), parsed[1])


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------- signing key
def signing_key(conn) -> bytes:
    """The installation's signing key, created (random, 32 bytes) by whoever asks first."""
    conn.execute("INSERT INTO api_signing_keys (key_id, secret) VALUES ('k1', %s) ON CONFLICT DO NOTHING",
                 (secrets.token_bytes(32),))
    return bytes(conn.execute("SELECT secret FROM api_signing_keys WHERE key_id = 'k1'").fetchone()[0])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(key: bytes, name: str, ttl_s: int = TOKEN_TTL_S, now: float | None = None) -> str:
    """A signed, expiring bearer token for a logged-in user: base64(claims).base64(HMAC-SHA256)."""
    now = time.time() if now is None else now
    claims = {"sub": name, "iat": int(now), "exp": int(now) + ttl_s, "jti": secrets.token_hex(8)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def verify_session(key: bytes, token: str, now: float | None = None) -> dict | None:
    """The claims of a valid, unexpired session token; None otherwise."""
    body, sep, sig = token.partition(".")
    if not sep or "." in sig:
        return None
    try:
        want = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(sig)):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    now = time.time() if now is None else now
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
        return None
    return claims if isinstance(claims.get("sub"), str) else None


def csrf_token(key: bytes, session_token: str) -> str:
    """The CSRF token bound to one session: a browser must echo it in X-CSRF-Token on writes."""
    return _b64(hmac.new(key, b"csrf\x1f" + session_token.encode(), hashlib.sha256).digest())
