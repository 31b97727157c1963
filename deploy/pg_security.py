"""The local PostgreSQL's security: TLS only (certificate from the local CA), scram-sha-256
passwords, no ``trust`` line, and the clients' libpq password file.

Pure rendering apart from the password file written (0600).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

#: The cluster's TLS settings, included from postgresql.conf and rewritten at every start.
TLS_CONF = "vreserve-tls.conf"


def secret_name(role: str) -> str:
    """Name of a database role's secret file in the secrets folder."""
    return f"pg-{role}"


def tls_conf(cert: Path, key: Path) -> str:
    return "\n".join([
        "# vreserve: TLS only (pg_hba.conf has hostssl lines only), scram-sha-256 passwords",
        "ssl = on",
        f"ssl_cert_file = '{cert}'",
        f"ssl_key_file = '{key}'",
        "ssl_min_protocol_version = 'TLSv1.2'",
        "password_encryption = 'scram-sha-256'",
        "",
    ])


def hba_conf(host: str) -> str:
    """TCP only over TLS with a scram-sha-256 password; the Unix socket also needs the password."""
    lines = ["# vreserve local runner: rewritten at every start. No trust, no plain TCP.",
             "local   all  all                 scram-sha-256",
             "hostssl all  all  127.0.0.1/32   scram-sha-256",
             "hostssl all  all  ::1/128        scram-sha-256"]
    if host not in ("127.0.0.1", "::1", "localhost"):
        lines.append(f"hostssl all  all  {host}/32  scram-sha-256" if ":" not in host else
                     f"hostssl all  all  {host}/128  scram-sha-256")
    return "\n".join(lines) + "\n"


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


def fingerprint(password: str) -> str:
    """A digest that tells whether the server has this password already (not the password)."""
    return hashlib.sha256(b"vreserve-pg-password:" + password.encode()).hexdigest()


def write_passfile(path: Path, role: str, password: str) -> None:
    """libpq's password file (``host:port:db:user:password``, 0600): the DSN names it, so the
    password never appears in a DSN, an argument list or the environment."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"*:*:*:{esc(role)}:{esc(password)}\n")
    tmp.replace(path)
