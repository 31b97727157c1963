"""PostgreSQL's refusals, proven on the real server: no plain TCP, no wrong or missing password,
and no secret in the DSN the settings carry."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from vreserve.settings import PG_PASSFILE, Settings

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def info(base_settings: Settings) -> dict:
    got = conninfo_to_dict(base_settings.pg_dsn)
    if got.get("sslmode") == "disable":
        pytest.skip("VR_PG_DSN opts out of TLS (sslmode=disable)")
    return got


def _connect(**info):
    return psycopg.connect(**{**info, "connect_timeout": 5})


def test_the_settings_dsn_verifies_tls_and_carries_no_password(base_settings: Settings, info: dict) -> None:
    assert info["sslmode"] == "verify-full" and "password" not in info
    with _connect(**info) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    passfile = base_settings.secrets_folder / PG_PASSFILE
    if info.get("passfile") == str(passfile):
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


def test_a_connection_without_tls_is_refused(info: dict) -> None:
    with pytest.raises(psycopg.OperationalError, match="no encryption|SSL off|pg_hba"):
        _connect(**{**info, "sslmode": "disable"})


def test_a_wrong_password_is_refused(info: dict) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(**{**info, "password": "not-the-password", "passfile": "/nonexistent"})


def test_a_connection_without_password_is_refused(info: dict, tmp_path) -> None:
    empty = tmp_path / "pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(psycopg.OperationalError, match="password"):
        _connect(**{**info, "passfile": str(empty)})


def test_rotating_the_password_keeps_open_connections_and_refuses_the_old(base_settings: Settings, info: dict) -> None:
    """`vreserve db rotate-password`: the open connection keeps working, a new connection logs in
    with the new password from the password file, the old password is refused."""
    if info.get("passfile") != str(base_settings.secrets_folder / PG_PASSFILE):
        pytest.skip("VR_PG_DSN names its own password source")
    secret = base_settings.secrets_folder / f"pg-{info.get('user') or 'vreserve'}.secret"
    old = secret.read_text().strip()
    env = {**os.environ, "VR_SECRETS_DIR": str(base_settings.secrets_folder)}
    with _connect(**info) as already_open:
        done = subprocess.run([sys.executable, "-m", "vreserve.cli", "db", "rotate-password"], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert already_open.execute("SELECT 1").fetchone() == (1,)
    new = secret.read_text().strip()
    assert new != old and new not in done.stdout + done.stderr and old not in done.stdout + done.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with _connect(**info) as conn:  # the password file has the new password
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(**{**info, "password": old, "passfile": "/nonexistent"})
