from __future__ import annotations

from pathlib import Path

import pytest

from vreserve.db import connect, discover, migrate, timescaledb_available
from vreserve.settings import Settings


def test_settings_from_env_reads_prefixed_variables() -> None:
    s = Settings.from_env({"VR_KAFKA_BOOTSTRAP": "h:1", "VR_PARTITIONS": "8", "PATH": "/bin"})
    assert s.kafka_bootstrap == "h:1" and s.partitions == 8
    assert s.topic("readings") == "vr.readings"


def test_settings_reject_unknown_and_malformed_variables() -> None:
    with pytest.raises(ValueError, match="unknown setting VR_KAFKA_BOOTSTRAPS"):
        Settings.from_env({"VR_KAFKA_BOOTSTRAPS": "x"})
    with pytest.raises(ValueError, match="VR_PARTITIONS"):
        Settings.from_env({"VR_PARTITIONS": "four"})


def test_mqtt_url_parsed() -> None:
    addr = Settings(mqtt_url="mqtt://u:p@example:1884").mqtt
    assert (addr.host, addr.port, addr.username, addr.password) == ("example", 1884, "u", "p")


def _write(d: Path, name: str, sql: str) -> None:
    (d / name).write_text(sql)


def test_discover_picks_variant(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "SELECT 1;")
    _write(tmp_path, "0002_b.timescale.sql", "SELECT 2;")
    _write(tmp_path, "0002_b.plain.sql", "SELECT 3;")
    assert [m.path.name for m in discover(tmp_path, timescale=True)] == ["0001_a.sql", "0002_b.timescale.sql"]
    assert [m.path.name for m in discover(tmp_path, timescale=False)] == ["0001_a.sql", "0002_b.plain.sql"]


def test_discover_rejects_bad_names_and_missing_variant(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.timescale.sql", "SELECT 1;")
    with pytest.raises(ValueError, match="lacks its plain variant"):
        discover(tmp_path, timescale=False)
    _write(tmp_path, "1_bad.sql", "SELECT 1;")
    with pytest.raises(ValueError, match="not understood"):
        discover(tmp_path, timescale=False)


@pytest.mark.services
def test_migrate_applies_once_and_picks_the_server_variant(settings: Settings, tmp_path: Path) -> None:
    _write(tmp_path, "0001_t.sql", "CREATE TABLE mig_probe (id int PRIMARY KEY);")
    _write(tmp_path, "0002_v.timescale.sql", "INSERT INTO mig_probe VALUES (2);")
    _write(tmp_path, "0002_v.plain.sql", "INSERT INTO mig_probe VALUES (3);")
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS mig_probe")
        conn.execute("CREATE SCHEMA IF NOT EXISTS migtest")
    dsn = settings.pg_dsn + " options='-c search_path=migtest'"
    first = migrate(dsn, tmp_path)
    second = migrate(dsn, tmp_path)
    with connect(dsn) as conn:
        ts = timescaledb_available(conn)
        rows = [r[0] for r in conn.execute("SELECT id FROM mig_probe")]
    assert [m.version for m in first] == [1, 2] and second == []
    assert rows == [2 if ts else 3]


@pytest.mark.services
def test_db_migrate_says_which_variant_and_keeps_it(base_settings: Settings, db_variant, unique: str) -> None:
    """`vreserve db migrate` names the database and its variant; a database keeps its variant (a
    plain one is not switched to TimescaleDB), and asking for the other one is a one-line error."""
    from click.testing import CliRunner
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.cli import cli

    info = conninfo_to_dict(base_settings.pg_dsn)
    dbname = f"vr_test_variant_{unique}"
    dsn = make_conninfo(**{**info, "dbname": dbname})
    with connect(base_settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        env = {"VR_PG_DSN": dsn}
        first = CliRunner().invoke(cli, ["db", "migrate", "--variant", "plain"], env=env)
        assert first.exit_code == 0, first.output
        assert f"/{dbname}: plain variant (plain variant asked for" in first.output
        again = CliRunner().invoke(cli, ["db", "migrate"], env=env)
        assert again.exit_code == 0 and "plain variant" in again.output and "schema up to date" in again.output
        if db_variant.name == "timescale":  # the server could load it, but this database stays plain
            assert "a new database would use it" in again.output
        other = CliRunner().invoke(cli, ["db", "migrate", "--variant", "timescale"], env=env)
        assert other.exit_code == 1
        assert "migrated with the plain variant; timescale needs a new database" in other.output
        assert "Traceback" not in other.output
    finally:
        with connect(base_settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
