"""PostgreSQL's refusals, proven on the real server: no plain TCP, no wrong or missing password,
and no secret in the DSN the settings carry."""
from __future__ import annotations

import stat

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from vreserve.settings import PG_PASSFILE, Settings

pytestmark = pytest.mark.services


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
