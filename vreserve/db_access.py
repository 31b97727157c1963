"""Who may do what in the database: one login role per component, least privilege, no superuser.

The roles are cluster-wide; the grants are per database and are (re)applied after every
``migrate`` (``apply_grants``), so a database made by the tests, the demo or a benchmark gets the
same rules as the installation's. The rules are data (:data:`TABLE_RULES`,
:data:`FUNCTION_RULES`), derived from the SQL each stage runs; a relation or function the
migrations create without a rule is reported by :func:`uncovered` (and fails
``tests/vreserve/test_db_access.py``), so a new table cannot silently be left unreachable or open.

* ``vr_owner`` owns the schema and runs the migrations; it is not a superuser (TimescaleDB is a
  trusted extension, so the database's owner may create it).
* The runner's bootstrap superuser (``vreserve``) only creates the roles and the databases.
* Passwords are generated per installation (``<secrets>/pg-<role>.secret``, 0600) and reach libpq
  through the role's own 0600 password file (``pgpass-<role>``); the server only ever sees their
  SCRAM verifiers.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql

from vreserve.pg_secrets import alter_password_sql, scram_verifier, secret_name, update_passfile
from vreserve.secret_store import ensure_secret
from vreserve.settings import role_passfile

#: The bootstrap superuser of the local runner's cluster: creates roles and databases, nothing else.
BOOTSTRAP = "vreserve"
OWNER = "vr_owner"
STREAM = "vr_stream"
DISPATCHER = "vr_dispatcher"
#: The HTTP API service and console, and the operator CLI (emergencies, users, tokens, registry;
#: the audit records of the sites' MQTT-login commands).
API = "vr_api"
SUPERVISION = "vr_supervision"
#: The MQTT bridge: reads the registry to validate readings.
INGEST = "vr_ingest"
ANALYST = "vr_analyst"
RUNTIME_ROLES = (STREAM, DISPATCHER, API, SUPERVISION, INGEST, ANALYST)
ALL_ROLES = (OWNER, *RUNTIME_ROLES)

PRIVILEGES = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE"}

# Short names for the rule table below.
_s, _d, _a, _v, _i, _r = STREAM, DISPATCHER, API, SUPERVISION, INGEST, ANALYST

#: relation (table, view, continuous aggregate) -> {role: privileges (S I U D)}. The analyst
#: reads everything except secrets (password hashes, token hashes, signing and webhook keys).
#: Whoever inserts or updates ``alerts`` also inserts ``alert_actions`` (trigger, runs as caller).
#: Supervision gets nothing on users, tokens, signing keys or carriers: its code (supervision/ and
#: the vreserve/ functions it calls: operations.audited / cli_identity, webhooks, settlement,
#: audits, assessment SQL) runs no statement on them; it only imports the ``Identity`` type.
TABLE_RULES: dict[str, dict[str, str]] = {
    "schema_migrations": {_s: "S", _d: "S", _a: "S", _v: "S", _i: "S", _r: "S"},
    "alert_actions": {_s: "SI", _d: "SI", _a: "SI", _v: "SI", _r: "S"},
    "alert_deliveries": {_a: "SIU", _v: "SIU", _r: "S"},
    "alert_webhooks": {_a: "SID", _v: "SID"},
    "alerts": {_s: "SIU", _d: "SU", _a: "SIU", _v: "SIU", _r: "S"},
    "api_signing_keys": {_a: "SI"},
    "api_tokens": {_a: "SIU"},
    "api_users": {_a: "SIU"},
    "audit_counts": {_a: "SI", _v: "SI", _r: "S"},
    "audit_discrepancies": {_a: "SI", _v: "SI", _r: "S"},
    "audit_log": {_d: "SI", _a: "SI", _v: "SI", _r: "S"},
    "audit_plan_sites": {_a: "SI", _v: "SI", _r: "S"},
    "audit_plans": {_a: "SI", _v: "SI", _r: "S"},
    "audit_rejections": {_v: "SI", _r: "S"},
    "audits": {_a: "SI", _v: "SI", _r: "S"},
    "carrier_webhooks": {_a: "SIU"},
    "carriers": {_d: "S", _a: "SIU", _r: "S"},
    "contract_penalty_terms": {_a: "SIUD", _v: "SIUD", _r: "S"},
    "contract_site_terms": {_s: "S", _d: "S", _a: "SIUD", _v: "SIUD", _r: "S"},
    "contracts": {_s: "S", _d: "S", _a: "SIU", _v: "SIU", _r: "S"},
    "demand_updates": {_d: "SI", _a: "SI", _r: "S"},
    "dispatch_orders": {_s: "S", _d: "SIU", _a: "S", _v: "S", _r: "S"},
    "dispatcher_offsets": {_d: "SIU", _r: "S"},
    "emergencies": {_d: "SIU", _a: "S", _v: "S", _r: "S"},
    "materials": {_s: "S", _d: "S", _a: "SIU", _v: "S", _i: "S", _r: "S"},
    "mode_events": {_d: "SI", _a: "SI", _v: "S", _r: "S"},
    "order_cancellations": {_d: "SIU", _a: "S", _r: "S"},
    "order_status_events": {_s: "S", _d: "SI", _a: "SI", _v: "S", _r: "S"},
    "plans": {_d: "SIU", _a: "S", _r: "S"},
    "quarantined_records": {_d: "SIU", _a: "SIU", _v: "SIU", _r: "S"},
    "readings_hourly": {_s: "SID", _a: "S", _v: "S", _r: "S"},
    "reconcile_cursor": {_s: "SIU", _a: "SIU", _v: "SIU", _r: "S"},
    "rejected_records": {_d: "SI", _a: "SI", _v: "SI", _r: "S"},
    "safety_levels": {_s: "S", _a: "SIUD", _v: "SIUD", _r: "S"},
    "settlement_lines": {_a: "SI", _v: "SI", _r: "S"},
    "settlement_runs": {_a: "SIU", _v: "SIU", _r: "S"},
    "settlement_statements": {_a: "SI", _v: "SI", _r: "S"},
    "site_materials": {_s: "S", _d: "S", _a: "SIU", _v: "S", _i: "S", _r: "S"},
    "sites": {_s: "S", _d: "S", _a: "SIU", _v: "SU", _i: "S", _r: "S"},
    "stock_aggregates": {_s: "SID", _a: "S", _v: "S", _r: "S"},
    "stock_changes": {_s: "SIU", _a: "SIU", _v: "SIU", _r: "S"},
    "stock_hourly_cell": {_s: "S", _a: "S", _v: "S", _r: "S"},
    "stock_latest": {_s: "SIU", _d: "S", _a: "S", _v: "S", _r: "S"},
    "stock_movements": {_s: "SI", _a: "SI", _v: "SI", _r: "S"},
    "stock_readings": {_s: "SIU", _a: "S", _v: "S", _r: "S"},
    "stream_offsets": {_s: "SIU", _r: "S"},
    "stream_sites": {_s: "SIU", _a: "S", _r: "S"},
    "webhook_deliveries": {_a: "SIU", _r: "S"},
}

#: function in the public schema -> roles that may call it (EXECUTE is revoked from PUBLIC).
#: Trigger functions fire whatever the caller's EXECUTE rights, so they are granted to nobody.
FUNCTION_RULES: dict[str, tuple[str, ...]] = {
    "stream_refresh_hourly": (_s,),
    "stream_apply_retention": (_s,),
    "alert_open_key": (_s, _d, _a, _v, _r),
    "alerts_before_insert": (),
    "alerts_before_update": (),
    "alerts_log_action": (),
    "audit_log_append_only": (),
    "supervision_keep_audited_trust": (),
}

_RELATIONS = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1"""

_FUNCTIONS = """
SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
ORDER BY 1"""

#: sequences owned by a column of a public table (serial / identity), with that table
_SEQUENCES = """
SELECT s.relname, t.relname FROM pg_class s
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = s.relnamespace
WHERE s.relkind = 'S' AND n.nspname = 'public'"""


class AccessError(RuntimeError):
    """The roles or grants cannot be set up as asked; one line, never a secret."""


@dataclass(frozen=True)
class Uncovered:
    """Relations and functions of a migrated database that no rule covers."""

    relations: tuple[str, ...]
    functions: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.relations or self.functions)

    def __str__(self) -> str:
        return (f"no access rule in vreserve/db_access.py for relation(s) {', '.join(self.relations) or '-'}"
                f" and function(s) {', '.join(self.functions) or '-'}")


def privileges(code: str) -> list[str]:
    """``"SIU"`` -> ``["SELECT", "INSERT", "UPDATE"]``; an unknown letter is a bug in the table."""
    return [PRIVILEGES[c] for c in code]


def uncovered(conn: psycopg.Connection) -> Uncovered:
    """What the migrations created that :data:`TABLE_RULES` / :data:`FUNCTION_RULES` do not name."""
    relations = [r[0] for r in conn.execute(_RELATIONS)]
    functions = sorted({r[0] for r in conn.execute(_FUNCTIONS)})
    return Uncovered(tuple(r for r in relations if r not in TABLE_RULES),
                     tuple(f for f in functions if f not in FUNCTION_RULES))


def roles_present(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ALL_ROLES),))}


def grant_statements(relations: list[str], functions: list[tuple[str, str]],
                     sequences: list[tuple[str, str]]) -> list[sql.Composable]:
    """Revoke-then-grant statements for what exists (idempotent: run them again, same result)."""
    roles = sql.SQL(", ").join(sql.Identifier(r) for r in RUNTIME_ROLES)
    out: list[sql.Composable] = [sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(roles)]
    for rel in relations:
        out.append(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(sql.Identifier(rel), roles))
        for role, code in TABLE_RULES.get(rel, {}).items():
            out.append(sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in privileges(code)), sql.Identifier(rel), sql.Identifier(role)))
    for seq, table in sequences:
        out.append(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM PUBLIC, {}").format(sql.Identifier(seq), roles))
        writers = [r for r, code in TABLE_RULES.get(table, {}).items() if "I" in code]
        if writers:
            out.append(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(
                sql.Identifier(seq), sql.SQL(", ").join(sql.Identifier(r) for r in writers)))
    for name, args in functions:
        fn = sql.SQL("{}({})").format(sql.Identifier(name), sql.SQL(args))
        out.append(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC, {}").format(fn, roles))
        callers = FUNCTION_RULES.get(name, ())
        if callers:
            out.append(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                fn, sql.SQL(", ").join(sql.Identifier(r) for r in callers)))
    return out


def apply_grants(conn: psycopg.Connection) -> Uncovered:
    """Grant every runtime role exactly its rules on what this database holds (run by the owner
    or a superuser, after every migrate). Returns what no rule covers (nobody gets it)."""
    missing = set(RUNTIME_ROLES) - roles_present(conn)
    if missing:
        raise AccessError(f"database role(s) {', '.join(sorted(missing))} missing: start the services"
                          " (vreserve services up) or run vreserve db migrate as the bootstrap superuser")
    relations = [r[0] for r in conn.execute(_RELATIONS)]
    functions = [(r[0], r[1]) for r in conn.execute(_FUNCTIONS)]
    sequences = [(r[0], r[1]) for r in conn.execute(_SEQUENCES)]
    with conn.transaction():
        for statement in grant_statements(relations, functions, sequences):
            conn.execute(statement)
    return uncovered(conn)


#: Lock file (in the secrets folder) that role setup and password rotation hold while they read
#: a role's secret and set the server's verifier.
ROLES_LOCK = ".pg-roles.lock"


@contextlib.contextmanager
def roles_lock(secrets: Path) -> Iterator[None]:
    """Exclusive lock over the database roles' secrets, across processes (``flock`` on a file in
    the secrets folder, released when the holder ends, even by a crash).

    Why: role setup reads a role's secret, then sets the server's verifier when it does not match.
    A rotation in between (server and file get the new password) would otherwise be undone: setup
    saw the old secret, finds the new verifier, "repairs" it back to the old password, and
    rewrites the password file with it, while the secret file holds the new one."""
    secrets.mkdir(parents=True, exist_ok=True)
    fd = os.open(secrets / ROLES_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def ensure_roles(conn: psycopg.Connection, secrets: Path) -> list[str]:
    """Create the owner and runtime roles where missing (superuser session), each with its
    generated password (SCRAM verifier only), and add them to the 0600 libpq password file.
    Returns the roles created now. Safe to run from several processes at once, and against a
    rotation (both hold :func:`roles_lock`)."""
    with roles_lock(secrets):
        return _ensure_roles_locked(conn, secrets)


def _ensure_roles_locked(conn: psycopg.Connection, secrets: Path) -> list[str]:
    created = []
    present = roles_present(conn)
    for role in ALL_ROLES:
        password = ensure_secret(secrets / f"{secret_name(role)}.secret")
        if role not in present:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                                     " NOREPLICATION NOBYPASSRLS").format(sql.Identifier(role)))
                created.append(role)
            except psycopg.errors.DuplicateObject:  # another session created it meanwhile
                pass
        if role == OWNER:  # choosing the migration variant reads shared_preload_libraries
            conn.execute(sql.SQL("GRANT pg_read_all_settings TO {}").format(sql.Identifier(OWNER)))
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        if not verifier_matches(stored[0] if stored else None, password):
            conn.execute(alter_password_sql(role, password))
        update_passfile(secrets / role_passfile(role), role, password)
    return created


def verifier_matches(stored: str | None, password: str) -> bool:
    """Whether the server's SCRAM verifier ``stored`` is for ``password`` (same salt, same keys)."""

    try:
        head, _keys = stored.split("$", 2)[1:], None
        iterations, salt = head[0].split(":")
        return scram_verifier(password, int(iterations), base64.b64decode(salt)) == stored
    except (AttributeError, ValueError, IndexError, TypeError):
        return False


def set_password(conn: psycopg.Connection, role: str, password: str) -> None:
    """Give ``role`` a new password (the server gets its SCRAM verifier only)."""

    conn.execute(alter_password_sql(role, password))


def prepare_database(conn: psycopg.Connection) -> int:
    """Superuser session on the database: make ``vr_owner`` its owner (so it may create the
    schema's objects and the trusted TimescaleDB extension) and hand it every object in the
    public schema a former owner left (a database migrated before the role split). Returns the
    number of objects whose owner changed."""
    dbname = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(OWNER)))
    for (schema,) in conn.execute(  # public, or whatever the DSN's search_path creates in
            "SELECT s FROM unnest(current_schemas(false)) s JOIN pg_namespace n ON n.nspname = s"
            " WHERE n.nspowner <> %s::regrole AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE"
            " d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')", (OWNER,)).fetchall():
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), sql.Identifier(OWNER)))
    moved = 0
    for kind, name, args in conn.execute(_FOREIGN_OWNED, {"o": OWNER}).fetchall():
        target = sql.Identifier(name) if args is None else sql.SQL("{}({})").format(sql.Identifier(name), sql.SQL(args))
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kind), target, sql.Identifier(OWNER)))
        moved += 1
    return moved


#: objects of the public schema (not an extension's) owned by another role than the owner
_FOREIGN_OWNED = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.relname, NULL
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> %(o)s::regrole
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'FUNCTION', p.proname, pg_get_function_identity_arguments(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proowner <> %(o)s::regrole
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""


def describe(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(role, attributes, grants in this database) for ``vreserve db roles``."""
    out = []
    for role, superuser, login in conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            (list((BOOTSTRAP, *ALL_ROLES)),)).fetchall():
        grants = conn.execute(
            "SELECT table_name, string_agg(CASE privilege_type WHEN 'TRIGGER' THEN 'G' ELSE left(privilege_type, 1) END,"
            " '' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants WHERE grantee = %s AND table_schema = 'public'"
            " GROUP BY 1 ORDER BY 1", (role,)).fetchall()
        attrs = ("superuser" if superuser else "no superuser") + (", login" if login else "")
        out.append((role, attrs, " ".join(f"{t}:{p}" for t, p in grants) or "-"))
    return out
