"""PostgreSQL passwords without exposing them: SCRAM verifiers for the server, a 0600 libpq
password file for the clients. Shared by the runner (deploy/) and the role setup (db_access)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path


def secret_name(role: str) -> str:
    """Name of a database role's secret file in the secrets folder."""
    return f"pg-{role}"


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677): the server is given this, never
    the password, so no statement, log line or error can show the password."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def alter_password_sql(role: str, password: str) -> str:
    """ALTER ROLE with the password's SCRAM verifier (for single-user mode's stdin or a session)."""
    quoted_role = '"' + role.replace('"', '""') + '"'
    return f"ALTER ROLE {quoted_role} WITH PASSWORD '{scram_verifier(password)}';\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _role_of(line: str) -> str | None:
    """The user field of a ``*:*:*:user:password`` line (escapes undone), None if not one."""
    fields = _fields(line)
    return fields[3] if fields else None


def passfile_entries(text: str) -> list[tuple[str, str]]:
    """(user, password) of each line of a libpq password file (escapes undone; comments skipped)."""
    return [(f[3], f[4]) for f in map(_fields, text.splitlines()) if f and not f[0].startswith("#")]


def _fields(line: str) -> list[str] | None:
    """The five fields of a ``host:port:db:user:password`` line (escapes undone), None if not one."""
    fields, cur, i = [], "", 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur += line[i + 1]
            i += 2
            continue
        if ch == ":" and len(fields) < 4:
            fields.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return [*fields, cur] if len(fields) == 4 else None


def update_passfile(path: Path, role: str, password: str) -> None:
    """Put ``role``'s line in libpq's password file (``host:port:db:user:password``, 0600),
    keeping the other roles' lines: the DSN names the file, so no password is ever in a DSN, an
    argument list or the environment. Replaced atomically (readers see old or new, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and _role_of(ln) != role]
    except FileNotFoundError:
        lines = []
    lines.append(f"*:*:*:{_esc(role)}:{_esc(password)}")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    tmp.replace(path)
