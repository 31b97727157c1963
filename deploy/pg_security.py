"""The local PostgreSQL's security: TLS only (certificate from the local CA), scram-sha-256
passwords, no ``trust`` line, and the clients' libpq password file.

Pure rendering apart from the password file written (0600).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from vreserve.pg_secrets import alter_password_sql, scram_verifier, secret_name, update_passfile  # noqa: F401

#: The cluster's TLS settings, included from postgresql.conf and rewritten at every start.
TLS_CONF = "vreserve-tls.conf"


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


def fingerprint(password: str) -> str:
    """A digest that tells whether the server has this password already (not the password)."""
    return hashlib.sha256(b"vreserve-pg-password:" + password.encode()).hexdigest()


def write_passfile(path: Path, role: str, password: str) -> None:
    """libpq's password file (0600) with ``role``'s line; other roles' lines are kept."""
    update_passfile(path, role, password)
