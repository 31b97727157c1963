"""PostgreSQL access and versioned migrations, shared by every stage that stores something.

Migrations are ``vreserve/migrations/NNNN_name.sql``. A migration may come in two variants,
``NNNN_name.timescale.sql`` and ``NNNN_name.plain.sql``: the first is applied when the
``timescaledb`` extension is available on the server, the second otherwise, so the same queries
work on both. Applied versions are recorded in ``schema_migrations``; applying again is a no-op.
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
    """One connection; ``prepare_threshold=None`` keeps it usable through pooling proxies and PGlite."""
    kwargs.setdefault("prepare_threshold", None)
    kwargs.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn, **kwargs)


def timescaledb_available(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


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
) -> list[Migration]:
    """Apply pending migrations, each in its own transaction. Returns those applied now."""
    with connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, variant text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        timescale = timescaledb_available(conn)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
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
        return applied
