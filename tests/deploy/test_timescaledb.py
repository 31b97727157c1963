"""The runner's TimescaleDB step: pinned source checked, one clear line when it cannot be had, and a
server that has the extension installed but not preloaded gets the plain migrations (issue 10)."""
from __future__ import annotations

import io
import shutil
import socket
import tarfile
import time
from pathlib import Path

import pytest

from deploy import timescaledb
from vreserve.db import connect, migrate, server_variant


def test_a_tarball_with_another_checksum_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "timescaledb-2.28.3.tar.gz"
    fake.write_bytes(b"not the source")
    with pytest.raises(timescaledb.Unavailable, match="sha256 .* is not TimescaleDB 2.28.3's"):
        timescaledb.verify_tarball(fake)


def test_shared_tarball_when_present_passes_the_check() -> None:
    if not timescaledb.SHARED_TARBALL.exists():
        pytest.skip(f"{timescaledb.SHARED_TARBALL} is not beside this checkout")
    timescaledb.verify_tarball(timescaledb.SHARED_TARBALL)


def test_source_choice_given_file_first_then_shared_copy(tmp_path: Path) -> None:
    given = tmp_path / "src.tar.gz"
    given.write_bytes(b"x")
    assert timescaledb.source_tarball({"VR_TIMESCALEDB_SRC": str(given)}) == given
    with pytest.raises(timescaledb.Unavailable, match="is not a file"):
        timescaledb.source_tarball({"VR_TIMESCALEDB_SRC": str(tmp_path / "missing.tar.gz")})
    expected = timescaledb.SHARED_TARBALL if timescaledb.SHARED_TARBALL.is_file() else None
    assert timescaledb.source_tarball({}) == expected


def test_extract_refuses_members_outside_the_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(tarfile.TarError):
        timescaledb.extract(bad, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_without_build_tools_the_outcome_is_one_line_and_plain(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = timescaledb.ensure(tmp_path / "cache", str(tmp_path / "no-pg_config"), lines.append, env={})
    assert not outcome.available
    assert outcome.line.startswith("TimescaleDB unavailable, running plain PostgreSQL: cannot build it without")
    assert "postgresql-server-dev" in outcome.line and "\n" not in outcome.line
    assert "timescaledb" not in timescaledb.preload_conf(False).split("#")[0]
    assert "shared_preload_libraries = 'timescaledb'" in timescaledb.preload_conf(True)
    assert "timescaledb.telemetry_level = off" in timescaledb.preload_conf(True)


def _runner_build() -> Path:
    """The runner's cached build (the runner builds it before any test runs on its services)."""
    from vreserve.settings import Settings

    cache = Settings.from_env().state_dir / "timescaledb"
    if not (cache / f"built-{timescaledb.VERSION}").exists():
        pytest.fail(f"no TimescaleDB build in {cache}: the runner should have built it before the tests")
    return cache


def test_a_cached_build_costs_nothing_the_second_time(tmp_path: Path) -> None:
    cache = _runner_build()
    lines: list[str] = []
    t0 = time.monotonic()
    outcome = timescaledb.ensure(cache, "/usr/lib/postgresql/15/bin/pg_config", lines.append, env={})
    assert outcome.available and outcome.stage == cache / "stage" and outcome.build_seconds is None
    assert lines == [] and time.monotonic() - t0 < 2.0
    bindir = timescaledb.private_server(Path("/usr/lib/postgresql/15/bin"), outcome.stage, tmp_path / "server", lines.append)
    assert (bindir / "postgres").exists() and (bindir.parent / "lib" / "timescaledb.so").exists()
    assert (tmp_path / "server" / "share" / "postgresql" / "15" / "extension" / "timescaledb.control").exists()
    assert len(lines) == 1
    timescaledb.private_server(Path("/usr/lib/postgresql/15/bin"), outcome.stage, tmp_path / "server", lines.append)
    assert len(lines) == 1  # the second time: nothing copied


def test_the_system_server_is_left_without_the_extension() -> None:
    """Other clusters on the machine use the system's PostgreSQL: the runner's build must not make
    TimescaleDB "available" there (clients deciding by availability would break)."""
    _runner_build()
    assert not Path("/usr/share/postgresql/15/extension/timescaledb.control").exists()


@pytest.mark.services
def test_installed_but_not_preloaded_gets_the_plain_variant(base_settings, tmp_path: Path) -> None:
    """Issue 10: the TimescaleDB migrations were chosen whenever the extension was merely available,
    and every migrate failed with "must be preloaded". A private cluster with the extension installed
    but not preloaded must get the plain variant, and say so."""
    from deploy.runner import Postgres

    _runner_build()
    port = _free_port()
    private = base_settings.with_(state_dir=tmp_path / "state",
                                  pg_dsn=f"postgresql://vreserve@127.0.0.1:{port}/vreserve")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "timescaledb").symlink_to(base_settings.state_dir / "timescaledb")
    cluster = Postgres(private, preload_timescaledb=False)
    lines: list[str] = []
    try:
        cluster.up(lines.append)
        assert any("not preloaded" in line for line in lines), lines
        with connect(private.pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()[0] == 1
            variant = server_variant(conn)
        assert variant.name == "plain" and "not in shared_preload_libraries" in variant.reason
        applied = migrate(private.pg_dsn)
        assert applied.variant.name == "plain" and len(applied) > 5
        with connect(private.pg_dsn) as conn:
            assert {r[0] for r in conn.execute("SELECT DISTINCT variant FROM schema_migrations")} == {"plain"}
        assert cluster.status().detail.endswith("database vreserve: plain variant")
    finally:
        cluster.down(lambda _m: None)
        if cluster.home != cluster.dir:
            shutil.rmtree(cluster.home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
