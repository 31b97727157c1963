"""Fixtures for dispatcher tests: `vreserve` subprocesses that are always stopped, a second private
database + topic prefix (for comparing a clean run with a killed-and-restarted one)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN
from vreserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VRESERVE = [sys.executable, "-m", "vreserve.cli"]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url,
               VR_PG_DSN=settings.pg_dsn, VR_TOPIC_PREFIX=settings.topic_prefix,
               VR_PARTITIONS=str(settings.partitions), VR_STATE_DIR=str(settings.state_dir),
               VR_MQTT_CA_FILE=settings.mqtt_ca_file, VR_KAFKA_SECURITY=settings.kafka_security,
               VR_KAFKA_CA_FILE=str(kafka_clients.ca_file(settings)),
               VR_SECRETS_DIR=str(kafka_clients.secret_file(settings, ADMIN).parent), PYTHONUNBUFFERED="1")
    return env


class Procs:
    """Start `vreserve ...` subprocesses; every one is stopped at teardown (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[subprocess.Popen] = []

    def start(self, settings: Settings, *args: str, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}-{len(self.started)}.log", "w")
        p = subprocess.Popen(VRESERVE + list(args), cwd=ROOT, env=settings_env(settings), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        p.log_path = log.name  # type: ignore[attr-defined]
        self.started.append(p)
        return p

    def run(self, settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(VRESERVE + list(args), cwd=ROOT, env=settings_env(settings), capture_output=True,
                              text=True, timeout=timeout)

    def stop_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def log_of(p) -> str:
    return Path(p.log_path).read_text()


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    try:
        yield ps
    finally:
        ps.stop_all()


@pytest.fixture
def second_settings(settings: Settings, requested_db_variant: str | None) -> Iterator[Settings]:
    """Another private database and topic prefix, on the same services."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    run_id = uuid.uuid4().hex[:8]
    dbname = f"vr_test_{run_id}"
    info = conninfo_to_dict(settings.pg_dsn)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    other = settings.with_(topic_prefix=f"t{run_id}.", pg_dsn=make_conninfo(**{**info, "dbname": dbname}))
    migrate(other.pg_dsn, variant=requested_db_variant)
    ensure_topics(other)
    yield other
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
