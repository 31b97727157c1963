"""PostgreSQL access and versioned migrations, shared by every stage that stores something.

Migrations are ``vreserve/migrations/NNNN_name.sql``. A migration may come in two variants,
``NNNN_name.timescale.sql`` and ``NNNN_name.plain.sql``: the first is applied when the server can
actually load the ``timescaledb`` extension (installed AND preloaded: merely installed, CREATE
EXTENSION fails with "must be preloaded"), the second otherwise, so the same queries work on both.
A database keeps the variant it was first migrated with (switching would need its data moved).
Applied versions are recorded in ``schema_migrations``; applying again is a no-op.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """One connection; ``prepare_threshold=None`` keeps it usable through pooling proxies."""
    kwargs.setdefault("prepare_threshold", None)
    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn, **kwargs)


VARIANTS = ("timescale", "plain")


class MigrationError(RuntimeError):
    """The database cannot be migrated as asked; the message says why in one line."""


@dataclass(frozen=True)
class Variant:
    """Which migration variant a database gets, and the one-line reason."""

    name: str  # "timescale" or "plain"
    reason: str

    @property
    def timescale(self) -> bool:
        return self.name == "timescale"


class Applied(list):
    """The migrations applied now (a list, so callers can count and iterate them), with the database's variant and what no
    access rule covers (``vreserve/db_access.py``; empty when the grants were applied in full)."""

    variant: Variant
    uncovered: object = None


def server_variant(conn: psycopg.Connection, prove: bool = True) -> Variant:
    """What the server can do: TimescaleDB only when the extension can actually be loaded
    (``prove=False``, for frequent health probes, stops at "installed and preloaded")."""
    row = conn.execute("SELECT default_version, installed_version FROM pg_available_extensions"
                       " WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return Variant("plain", "the timescaledb extension is not installed on the server")
    version, installed_here = row
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    if "timescaledb" not in [p.strip().strip('"') for p in preload.split(",")]:
        return Variant("plain", f"timescaledb {version} is installed but not in shared_preload_libraries")
    if installed_here:
        return Variant("timescale", f"TimescaleDB {installed_here} loaded")
    if not prove:
        return Variant("timescale", f"TimescaleDB {version} preloaded")
    try:  # prove it: create the extension in a transaction that is rolled back
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            raise psycopg.Rollback()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Variant("plain", f"timescaledb {version} is preloaded but cannot be created: {first}")
    return Variant("timescale", f"TimescaleDB {version} loadable")


def timescaledb_available(conn: psycopg.Connection) -> bool:
    """True when the TimescaleDB variant would be chosen for a new database on this server."""
    return server_variant(conn).timescale


def recorded_variant(conn: psycopg.Connection) -> str | None:
    """The variant this database was migrated with (None: a new database)."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return None
    if conn.execute("SELECT installed_version FROM pg_available_extensions WHERE name = 'timescaledb'"
                    " AND installed_version IS NOT NULL").fetchone():
        return "timescale"
    row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    return "plain" if row[0] else None


def choose_variant(conn: psycopg.Connection, forced: str | None = None) -> Variant:
    """The variant for this database: the one it already has, else what was asked, else what the
    server can load. Raises MigrationError when the ask and the server or the data disagree."""
    if forced is not None and forced not in VARIANTS:
        raise MigrationError(f"unknown migration variant {forced!r}; want one of {', '.join(VARIANTS)}")
    server = server_variant(conn)
    recorded = recorded_variant(conn)
    if recorded == "timescale" and not server.timescale:
        raise MigrationError(f"this database uses TimescaleDB but the server cannot load it now ({server.reason})")
    if recorded is not None and forced is not None and forced != recorded:
        raise MigrationError(f"this database was migrated with the {recorded} variant; {forced} needs a new database")
    if recorded is not None:
        if recorded == "plain" and server.timescale:
            return Variant("plain", f"database created with the plain variant ({server.reason} on the server;"
                                    " a new database would use it)")
        return Variant(recorded, server.reason if recorded == "timescale" else "database uses plain PostgreSQL")
    if forced == "timescale" and not server.timescale:
        raise MigrationError(f"the TimescaleDB variant was asked for but {server.reason}")
    if forced == "plain":
        return Variant("plain", "plain variant asked for" + (f" ({server.reason} on the server)" if server.timescale else ""))
    return server


def discover(directory: Path, timescale: bool) -> list[Migration]:
    """The migrations to apply, one per version, picking the variant that fits the server."""
    by_version: dict[int, dict[str | None, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name not understood: {path.name} (want NNNN_name[.timescale|.plain].sql)")
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        if version in names and names[version] != name:
            raise ValueError(f"two migrations share version {version:04d}: {names[version]} and {name}")
        names[version] = name
        by_version.setdefault(version, {})[variant] = path
    chosen = []
    for version in sorted(by_version):
        variants = by_version[version]
        if None in variants and len(variants) > 1:
            raise ValueError(f"migration {version:04d} has both a plain file and variants")
        want = "timescale" if timescale else "plain"
        path = variants.get(None) or variants.get(want)
        if path is None:
            raise ValueError(f"migration {version:04d} lacks its {want} variant")
        chosen.append(Migration(version, names[version], path))
    return chosen


def migrate(
    dsn: str,
    directory: Path = MIGRATIONS_DIR,
    progress: Callable[[str], None] = lambda _msg: None,
    variant: str | None = None,
) -> Applied:
    """Apply pending migrations, each in its own transaction. Returns those applied now (with
    ``.variant``). ``variant`` forces "plain" or "timescale" for a new database (tests of the plain
    variant on a TimescaleDB server); by default the server decides."""
    with connect(dsn, autocommit=True) as conn:
        _become_owner(conn, progress)
        chosen = choose_variant(conn, variant)
        timescale = chosen.timescale
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, variant text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = Applied()
        applied.variant = chosen
        for mig in discover(directory, timescale):
            if mig.version in done:
                continue
            progress(f"applying {mig.path.name}")
            with conn.transaction():
                conn.execute(mig.path.read_text())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, "timescale" if timescale else "plain"),
                )
            applied.append(mig)
        if directory == MIGRATIONS_DIR:
            applied.uncovered = _grant(conn, progress)
        return applied


def _become_owner(conn: psycopg.Connection, progress: Callable[[str], None]) -> None:
    """A superuser session (the bootstrap role of the runner or the test fixtures) hands the
    database to the migration owner and migrates as that role, so the schema is the owner's and
    no object belongs to a superuser. Without the owner role on the server, nothing changes."""
    from vreserve import db_access  # lazy: vreserve.db_access imports this module

    if conn.execute("SELECT current_setting('is_superuser')").fetchone()[0] != "on":
        return
    if db_access.OWNER not in db_access.roles_present(conn):
        return
    moved = db_access.prepare_database(conn)
    if moved:
        progress(f"{moved} object(s) handed to the migration owner {db_access.OWNER}")
    conn.execute(f'SET ROLE "{db_access.OWNER}"')


def _grant(conn: psycopg.Connection, progress: Callable[[str], None]):
    """Apply the components' grants (vreserve/db_access.py); skipped on a server without the
    roles (``VR_PG_ROLES=single``)."""
    from vreserve import db_access  # lazy: vreserve.db_access imports this module

    if not db_access.roles_present(conn) & set(db_access.RUNTIME_ROLES):
        progress("no component roles on this server: grants skipped (VR_PG_ROLES=single)")
        return None
    missing = db_access.apply_grants(conn)
    if missing:
        progress(str(missing))
    return missing
