"""deploy/compose.yaml and its init services, checked without Docker (none on the project's
machines): the file parses, publishes every port on 127.0.0.1 only and runs the database roles'
setup before the app services; that setup (``compose_init --database``) is run here against the
real local server on a fresh database and leaves the same roles and grants as the runner."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deploy import compose_init
from vreserve import db_access
from vreserve.db import connect
from vreserve.db_access import OWNER, RUNTIME_ROLES, STREAM
from vreserve.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
APP_SERVICES = ("bridge", "stream", "dispatcher")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_published_port_is_bound_to_localhost() -> None:
    services = _compose()["services"]
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"kafka", "mosquitto", "postgres"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_app_services_use_their_own_roles_made_before_they_start() -> None:
    services = _compose()["services"]
    db_init = services["db-init"]
    assert db_init["command"] == ["python", "-m", "deploy.compose_init", "--database"]
    assert db_init["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert db_init["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert "profiles" not in db_init  # roles exist after a plain `up`, for host tools too
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert "VR_PG_ROLES" not in env, name  # not "single": each component its own role
        assert "password" not in conninfo_to_dict(env["VR_PG_DSN"]), name
        assert services[name]["depends_on"]["db-init"] == {"condition": "service_completed_successfully"}, name


@pytest.fixture
def fresh_database(base_settings: Settings, unique: str):
    """Settings naming a new, empty database on the real server (dropped afterwards)."""
    name = f"vr_test_compose_{unique}"
    with connect(base_settings.pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base_settings.with_(pg_dsn=make_conninfo(**{**conninfo_to_dict(base_settings.pg_dsn), "dbname": name}))
    finally:
        with connect(base_settings.pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.services
def test_compose_database_init_makes_the_roles_schema_and_grants(fresh_database: Settings) -> None:
    settings = fresh_database
    if settings.pg_roles == "single":
        pytest.skip("VR_PG_ROLES=single")
    said: list[str] = []
    compose_init.database(settings, said.append)
    assert "migration(s) applied" in said[0]
    with connect(settings.pg_dsn) as conn:
        assert not db_access.uncovered(conn)
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')")}
        assert owners == {OWNER}
        assert conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
                            ).fetchone()[0] == OWNER
    for role in RUNTIME_ROLES:  # each logs in with its own password file, as the app containers do
        with connect(settings.pg_dsn_for(role)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    with connect(settings.pg_dsn_for(STREAM)) as conn:
        assert conn.execute("SELECT has_table_privilege('stock_latest', 'INSERT')").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM plans")
    again: list[str] = []
    compose_init.database(settings, again.append)  # idempotent: a restarted db-init changes nothing
    assert "0 migration(s) applied" in again[0] and "already present" in again[0]


@pytest.mark.services
def test_compose_database_init_refuses_what_cannot_give_roles(fresh_database: Settings) -> None:
    with pytest.raises(SystemExit, match="VR_PG_ROLES=single"):
        compose_init.database(fresh_database.with_(pg_roles="single"))
    with pytest.raises(SystemExit, match="bootstrap superuser"):
        compose_init.database(fresh_database.with_(pg_dsn=fresh_database.pg_dsn_for(db_access.API)))
