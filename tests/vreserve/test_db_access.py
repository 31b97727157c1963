"""The database roles' refusals, proven on the real server: each component's role can do only
what vreserve/db_access.py grants it, none is a superuser, none owns anything, and every table
the migrations create has a rule."""
from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from vreserve import db_access
from vreserve.db import connect
from vreserve.db_access import (ALL_ROLES, ANALYST, API, OWNER, PRIVILEGES, RUNTIME_ROLES, STREAM, TABLE_RULES,
                                FUNCTION_RULES)
from vreserve.settings import Settings, role_passfile

ROOT = Path(__file__).resolve().parents[2]

#: tables holding secrets or their hashes: nobody but the API service (and supervision, for the
#: alert webhooks it registers) may read them
SECRET_TABLES = {"api_users", "api_tokens", "api_signing_keys", "carrier_webhooks", "alert_webhooks"}


# -- the rule table itself (pure)

def test_every_rule_names_a_known_role_and_privilege() -> None:
    for table, rules in TABLE_RULES.items():
        assert set(rules) <= set(RUNTIME_ROLES), table
        assert all(code and set(code) <= set(PRIVILEGES) for code in rules.values()), table
    assert all(set(callers) <= set(RUNTIME_ROLES) for callers in FUNCTION_RULES.values())


def test_the_analyst_only_reads_and_never_a_secret() -> None:
    for table, rules in TABLE_RULES.items():
        assert rules.get(ANALYST, "S") == "S", table
        assert (ANALYST in rules) == (table not in SECRET_TABLES), table


def test_the_stream_role_is_granted_nothing_on_plans_or_settlement() -> None:
    for table in ("plans", "dispatch_orders", "settlement_statements", "settlement_lines", "emergencies", "contracts"):
        assert set(TABLE_RULES[table].get(STREAM, "")) <= {"S"}, table


def test_a_component_dsn_is_the_settings_dsn_as_its_role_with_its_own_password_file(tmp_path) -> None:
    base = Settings(state_dir=tmp_path, pg_dsn="postgresql://vreserve:pw@db.example:5432/vr?sslmode=verify-full")
    info = conninfo_to_dict(base.pg_dsn_for(STREAM))
    assert (info["user"], info["host"], info["dbname"]) == (STREAM, "db.example", "vr")
    assert "password" not in info and info["passfile"] == str((tmp_path / "secrets" / "pgpass-vr_stream").resolve())
    elsewhere = Settings(state_dir=tmp_path, pg_dsn="postgresql://vreserve@db/vr?passfile=/run/vr/pgpass")
    assert conninfo_to_dict(elsewhere.pg_dsn_for(API))["passfile"] == "/run/vr/pgpass-vr_api"
    own = Settings(state_dir=tmp_path, pg_dsn="postgresql://vreserve@db/vr?passfile=/etc/vr/creds")
    assert conninfo_to_dict(own.pg_dsn_for(API))["passfile"] == "/etc/vr/creds"
    single = base.with_(pg_roles="single")
    assert single.pg_dsn_for(STREAM) == single.pg_dsn


# -- the real server

def _role_dsn(settings: Settings, role: str) -> str:
    if settings.pg_roles == "single":
        pytest.skip("VR_PG_ROLES=single: every component uses VR_PG_DSN")
    return settings.pg_dsn_for(role)


def test_every_relation_and_function_the_migrations_create_has_a_rule(settings: Settings) -> None:
    """A new migration that adds a table without a rule in vreserve/db_access.py fails here."""
    with connect(settings.pg_dsn) as conn:
        missing = db_access.uncovered(conn)
    assert not missing, str(missing)


def test_no_runtime_role_is_a_superuser_or_may_create_roles_or_databases(settings: Settings) -> None:
    with connect(settings.pg_dsn) as conn:
        rows = conn.execute("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication"
                            " FROM pg_roles WHERE rolname = ANY(%s)", (list(ALL_ROLES),)).fetchall()
    assert {r[0] for r in rows} == set(ALL_ROLES)
    assert all(not any(r[1:]) for r in rows), rows
    for role in RUNTIME_ROLES:  # and the session really is that role, not the superuser
        with connect(_role_dsn(settings, role)) as conn:
            assert conn.execute("SELECT current_user, current_setting('is_superuser')").fetchone() == (role, "off")


def test_the_migration_owner_owns_every_object_and_no_runtime_role_owns_any(settings: Settings) -> None:
    with connect(settings.pg_dsn) as conn:
        owners = conn.execute(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " UNION SELECT DISTINCT proowner::regrole::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            "   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_proc.oid AND d.deptype = 'e')"
        ).fetchall()
    assert {o[0] for o in owners} == {OWNER}


def _refused(dsn: str, statement: str | sql.Composable) -> None:
    with connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.mark.parametrize("statement", [
    "UPDATE plans SET status = status",
    "INSERT INTO plans DEFAULT VALUES",
    "DELETE FROM plans",
    "UPDATE settlement_statements SET statement_id = statement_id",
    "DELETE FROM settlement_lines",
    "INSERT INTO settlement_lines DEFAULT VALUES",
    "UPDATE dispatch_orders SET status = status",
    "UPDATE emergencies SET ended_at = now()",
    "SELECT * FROM api_tokens",
    "TRUNCATE stock_readings",
])
def test_the_stream_role_cannot_touch_plans_settlement_or_orders(settings: Settings, statement: str) -> None:
    _refused(_role_dsn(settings, STREAM), statement)


def test_the_stream_role_writes_what_the_worker_writes(settings: Settings) -> None:
    """The other side of the refusals: its own tables work (inside a rolled-back transaction)."""
    with connect(_role_dsn(settings, STREAM)) as conn:
        conn.execute("SELECT count(*) FROM stock_latest").fetchone()
        conn.execute("UPDATE stream_offsets SET next_offset = next_offset WHERE false")
        conn.execute("DELETE FROM stock_aggregates WHERE false")
        conn.rollback()


def test_the_analyst_cannot_write_any_table(settings: Settings) -> None:
    """Every table of the database, every kind of write: refused."""
    dsn = _role_dsn(settings, ANALYST)
    with connect(settings.pg_dsn) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')")]
    assert len(tables) > 30
    with connect(dsn, autocommit=True) as conn:
        for table in tables:
            for template in ("INSERT INTO {} DEFAULT VALUES", "DELETE FROM {}", "TRUNCATE {}"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql.SQL(template).format(sql.Identifier(table)))
        for table in SECRET_TABLES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] >= 0  # reading is its job
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE analyst_scratch (x int)")


@pytest.mark.parametrize("statement", [
    "DROP TABLE sites",
    "ALTER TABLE sites ADD COLUMN x int",
    "ALTER TABLE plans OWNER TO vr_api",
    "CREATE TABLE api_scratch (x int)",
    "DROP FUNCTION alert_open_key(text, text, text, text)",
    "CREATE INDEX ON sites (site_id)",
    "ALTER ROLE vr_api SUPERUSER",
])
def test_the_api_role_cannot_change_the_schema(settings: Settings, statement: str) -> None:
    _refused(_role_dsn(settings, API), statement)


def test_a_role_without_its_password_is_refused(settings: Settings, tmp_path) -> None:
    empty = tmp_path / "pgpass"
    empty.write_text("")
    empty.chmod(0o600)
    info = conninfo_to_dict(_role_dsn(settings, STREAM))
    if info.get("sslmode") == "disable":
        pytest.skip("VR_PG_DSN opts out of TLS")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(**{**info, "passfile": str(empty), "connect_timeout": 5})
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**{**info, "passfile": str(empty), "password": "not-the-password", "connect_timeout": 5})


def test_role_secrets_are_private_files(settings: Settings) -> None:
    _role_dsn(settings, STREAM)
    for role in ALL_ROLES:
        secret = settings.secrets_folder / f"pg-{role}.secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        passfile = settings.secrets_folder / role_passfile(role)
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600, passfile
        # a component's password file holds its own password only (not the superuser's)
        assert [line.split(":")[3] for line in passfile.read_text().splitlines()] == [role]
        assert conninfo_to_dict(settings.pg_dsn_for(role))["passfile"] == str(passfile)


def test_granting_twice_changes_nothing(settings: Settings) -> None:
    query = ("SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
             " WHERE table_schema = 'public' AND grantee = ANY(%s) ORDER BY 1, 2, 3")
    with connect(settings.pg_dsn, autocommit=True) as conn:
        before = conn.execute(query, (list(RUNTIME_ROLES),)).fetchall()
        conn.execute(f'SET ROLE "{OWNER}"')
        assert not db_access.apply_grants(conn)
        after = conn.execute(query, (list(RUNTIME_ROLES),)).fetchall()
    assert before == after and len(before) > 100


def test_a_database_migrated_before_the_split_is_handed_to_the_owner(base_settings: Settings, unique: str) -> None:
    """An object a superuser created (as every migration did before the roles existed) gets the
    migration owner at the next migrate, and the components get their grants on it."""
    from psycopg.conninfo import make_conninfo

    from vreserve.db import migrate

    info = conninfo_to_dict(base_settings.pg_dsn)
    name = f"vr_test_adopt_{unique}"
    with connect(base_settings.pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(**{**info, "dbname": name})
    try:
        migrate(dsn)
        with connect(dsn, autocommit=True) as conn:  # objects of the superuser, as the old migrate left them
            conn.execute("ALTER TABLE sites OWNER TO CURRENT_USER")
            conn.execute("ALTER FUNCTION alert_open_key(text, text, text, text) OWNER TO CURRENT_USER")
            conn.execute("REVOKE ALL ON sites FROM vr_ingest")
        migrate(dsn)
        with connect(dsn) as conn:
            assert conn.execute("SELECT relowner::regrole::text FROM pg_class WHERE relname = 'sites'").fetchone()[0] == OWNER
            assert conn.execute("SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'alert_open_key'").fetchone()[0] == OWNER
            assert conn.execute("SELECT has_table_privilege('vr_ingest', 'sites', 'SELECT'),"
                                " has_table_privilege('vr_ingest', 'sites', 'UPDATE')").fetchone() == (True, False)
    finally:
        with connect(base_settings.pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_rotating_a_component_role_keeps_open_connections_and_refuses_the_old(settings: Settings) -> None:
    """`vreserve db rotate-password --role vr_analyst`: the open connection keeps working, a new
    one logs in with the new password from the password file, the old password is refused."""
    dsn = _role_dsn(settings, ANALYST)
    info = conninfo_to_dict(dsn)
    secret = settings.secrets_folder / f"pg-{ANALYST}.secret"
    old = secret.read_text().strip()
    env = {**os.environ, "VR_SECRETS_DIR": str(settings.secrets_folder)}
    with connect(dsn) as already_open:
        done = subprocess.run([sys.executable, "-m", "vreserve.cli", "db", "rotate-password", "--role", ANALYST],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert already_open.execute("SELECT count(*) FROM sites").fetchone()[0] >= 0
    new = secret.read_text().strip()
    assert new != old and new not in done.stdout + done.stderr and old not in done.stdout + done.stderr
    with connect(dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ANALYST,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**{**info, "password": old, "passfile": "/nonexistent", "connect_timeout": 5})


def test_db_roles_lists_every_role_and_its_grants(settings: Settings) -> None:
    env = {**os.environ, "VR_SECRETS_DIR": str(settings.secrets_folder), "VR_PG_DSN": settings.pg_dsn}
    done = subprocess.run([sys.executable, "-m", "vreserve.cli", "db", "roles"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for role in RUNTIME_ROLES:
        head = next(i for i, line in enumerate(lines) if line.startswith(role + " "))
        assert "no superuser" in lines[head]
    stream_grants = lines[next(i for i, line in enumerate(lines) if line.startswith(STREAM + " ")) + 1]
    assert "stream_offsets:" in stream_grants and "plans:" not in stream_grants


def _set_up_roles(settings: Settings) -> list[str]:
    with connect(settings.pg_dsn, autocommit=True) as conn:
        return db_access.ensure_roles(conn, settings.secrets_folder)


def test_role_setup_and_rotation_wait_for_each_other(settings: Settings) -> None:
    """Role setup (runner start, test session, `db migrate`) and `db rotate-password` take the same
    lock: while one holds it the others wait, so setup never puts back the password a rotation has
    just replaced. Afterwards the server, the secret and the password file agree."""
    dsn = _role_dsn(settings, ANALYST)
    secret = settings.secrets_folder / f"pg-{ANALYST}.secret"
    before = secret.read_text()
    env = {**os.environ, "VR_SECRETS_DIR": str(settings.secrets_folder)}
    with contextlib.ExitStack() as held, ThreadPoolExecutor(1) as pool:
        held.enter_context(db_access.roles_lock(settings.secrets_folder))  # as a rotation in progress
        setup = pool.submit(_set_up_roles, settings)
        rotation = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "db", "rotate-password", "--role", ANALYST],
                                    env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4.0)
        assert not setup.done(), "role setup did not wait for the lock"
        assert rotation.poll() is None and secret.read_text() == before, "the rotation did not wait for the lock"
        held.close()  # release: both go on, one after the other
        out, err = rotation.communicate(timeout=60)
        assert rotation.returncode == 0, err
        setup.result(timeout=60)
    new = secret.read_text().strip()
    assert new != before.strip()
    with connect(settings.pg_dsn) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (ANALYST,)).fetchone()[0]
    assert db_access.verifier_matches(stored, new)
    with connect(dsn) as conn:  # the password file holds it too
        assert conn.execute("SELECT current_user").fetchone() == (ANALYST,)


def test_supervision_cannot_touch_users_tokens_signing_keys_or_carriers(settings: Settings) -> None:
    """Its code runs no statement on them (see the note above TABLE_RULES), so it holds no grant."""
    dsn = _role_dsn(settings, db_access.SUPERVISION)
    for table in ("api_users", "api_tokens", "api_signing_keys", "carriers"):
        _refused(dsn, sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
        _refused(dsn, sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    with connect(dsn) as conn:  # its own tables stay open to it
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] >= 0
        assert conn.execute("SELECT count(*) FROM alert_webhooks").fetchone()[0] >= 0
