"""Fixtures that give every test real services.

Where the services come from, in order:
1. ``VR_KAFKA_BOOTSTRAP``, ``VR_MQTT_URL`` and ``VR_PG_DSN`` all set: use them as they are.
2. A Docker engine answers: testcontainers (apache/kafka, eclipse-mosquitto, timescale/timescaledb).
3. Otherwise: the project's local runner (``vreserve services up``), started if not running. The
   runner's services are left running after the session (other sessions may share them); the
   README's test command stops them if it started them.

Each test session gets its own topic prefix and its own freshly migrated database, so sessions
that share a broker or a server never see each other's data. The database gets the TimescaleDB
variant of the migrations when the server can load the extension (the local runner builds and
preloads it); ``--db-variant plain`` runs the session on the plain-PostgreSQL variant instead, as
users without the extension get it (CI runs the storage tests both ways).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from kafka import TopicPartition

from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN
from vreserve.settings import DEFAULT_MQTT_USER, Settings

ENV_VARS = ("VR_KAFKA_BOOTSTRAP", "VR_MQTT_URL", "VR_PG_DSN")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db-variant", choices=["auto", "timescale", "plain"], default="auto",
                     help="migration variant of the session's databases (auto: TimescaleDB when the server can load it)")


#: the session database's migration variant, for the summary line at the end of the run
_SESSION_VARIANT: list = []


def pytest_terminal_summary(terminalreporter) -> None:
    for variant in _SESSION_VARIANT:
        terminalreporter.write_line(f"session database: {variant.name} variant ({variant.reason})")


@pytest.fixture(scope="session")
def requested_db_variant(request: pytest.FixtureRequest) -> str | None:
    """The variant asked for on the command line (None: let the server decide)."""
    value = request.config.getoption("--db-variant")
    return None if value == "auto" else value


@dataclass(frozen=True)
class ServiceSource:
    how: str  # "environment", "testcontainers", "local runner"
    settings: Settings


def docker_engine_answers(timeout: float = 5.0) -> bool:
    """Probe for a Docker engine before touching testcontainers (its errors without one are obscure)."""
    if shutil.which("docker") is None:
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        res = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                             capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and res.stdout.strip() != ""


def _from_testcontainers(stack: list) -> Settings:  # pragma: no cover - needs a Docker engine
    import json
    import tempfile

    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    from vreserve.mqtt_access import ADMIN_USER, render_config
    from vreserve.secret_store import ensure_secret, secret_path
    from vreserve.settings import mqtt_secret_name

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    kafka.start()
    stack.append(kafka)
    pg = PostgresContainer("timescale/timescaledb:latest-pg17", username="vreserve", password="vreserve", dbname="vreserve")
    pg.start()
    stack.append(pg)
    # A per-session state folder with generated secrets and the same dynamic-security rules as the runner.
    state = Path(tempfile.mkdtemp(prefix="vr-tc-"))
    conf_dir = state / "mosquitto"
    conf_dir.mkdir()
    service_pw = ensure_secret(secret_path(state, mqtt_secret_name(DEFAULT_MQTT_USER)))
    admin_pw = ensure_secret(secret_path(state, mqtt_secret_name(ADMIN_USER)))
    (conf_dir / "dynamic-security.json").write_text(json.dumps(render_config(None, DEFAULT_MQTT_USER, service_pw, admin_pw)))
    (conf_dir / "mosquitto.conf").write_text(
        "listener 1883 0.0.0.0\nallow_anonymous false\nplugin /usr/lib/mosquitto_dynamic_security.so\n"
        "plugin_opt_config_file /mosquitto/config/dynamic-security.json\nmax_queued_messages 5000000\n"
        "max_queued_bytes 0\nmax_inflight_messages 2000\nmax_packet_size 131072\n"
    )
    mosquitto = (
        DockerContainer("eclipse-mosquitto:2")
        .with_exposed_ports(1883)
        .with_volume_mapping(str(conf_dir), "/mosquitto/config", "rw")
    )
    mosquitto.start()
    stack.append(mosquitto)
    wait_for_logs(mosquitto, "running", timeout=30)
    return Settings.from_env().with_(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        kafka_security="PLAINTEXT",  # the container's broker has no SASL listener
        pg_dsn=pg.get_connection_url(driver=None),
        state_dir=state,
        mqtt_url=(
            f"mqtt://{DEFAULT_MQTT_USER}@"
            f"{mosquitto.get_container_host_ip()}:{mosquitto.get_exposed_port(1883)}"
        ),
    )


@pytest.fixture(scope="session")
def service_source() -> Iterator[ServiceSource]:
    if all(os.environ.get(v) for v in ENV_VARS):
        yield ServiceSource("environment", Settings.from_env())
        return
    if docker_engine_answers():  # pragma: no cover - no Docker engine on the project's machines
        stack: list = []
        try:
            yield ServiceSource("testcontainers", _from_testcontainers(stack))
        finally:
            for container in reversed(stack):
                container.stop()
        return
    from deploy import runner

    settings = Settings.from_env()
    try:
        runner.up(settings, progress=lambda m: print(f"[services] {m}", flush=True))
    except runner.ServiceError as exc:
        pytest.exit(f"local services did not start: {exc}", returncode=3)
    yield ServiceSource("local runner", settings)


@pytest.fixture(scope="session")
def base_settings(service_source: ServiceSource) -> Settings:
    """Service addresses only (shared topic prefix and database): for smoke tests.

    The components' Kafka secrets and the CA stay where the services' state folder keeps them,
    also for subprocesses that tests start with a private state folder (VR_SECRETS_DIR and
    VR_KAFKA_CA_FILE, inherited)."""
    settings = service_source.settings
    if not settings.secrets_dir:
        settings = settings.with_(secrets_dir=str(kafka_clients.secret_file(settings, ADMIN).parent.resolve()))
        os.environ["VR_SECRETS_DIR"] = settings.secrets_dir
    if not settings.kafka_ca_file:
        settings = settings.with_(kafka_ca_file=str(kafka_clients.ca_file(settings).resolve()))
        os.environ["VR_KAFKA_CA_FILE"] = settings.kafka_ca_file
    ensure_db_roles(settings)
    return settings


def ensure_db_roles(settings: Settings) -> None:
    """The components' database roles exist cluster-wide (the runner makes them; a server from the
    environment gets them here when the DSN's user may create roles)."""
    from vreserve import db_access
    from vreserve.db import connect

    if settings.pg_roles == "single":
        return
    with connect(settings.pg_dsn, autocommit=True) as conn:
        if conn.execute("SELECT current_setting('is_superuser')").fetchone()[0] == "on":
            db_access.ensure_roles(conn, settings.secrets_folder)


@contextlib.contextmanager
def fresh_settings(base_settings: Settings, variant: str | None = None) -> Iterator[Settings]:
    """Settings with a private topic prefix and a private, migrated database (dropped afterwards)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    run_id = uuid.uuid4().hex[:8]
    dbname = f"vr_test_{run_id}"
    info = conninfo_to_dict(base_settings.pg_dsn)
    admin_dsn = make_conninfo(**{**info, "dbname": info.get("dbname") or "postgres"})
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    test_settings = base_settings.with_(
        topic_prefix=f"t{run_id}.",
        pg_dsn=make_conninfo(**{**info, "dbname": dbname}),
    )
    _SESSION_VARIANT.append(migrate(test_settings.pg_dsn, variant=variant).variant)
    ensure_topics(test_settings)
    yield test_settings
    if os.environ.get("VR_TEST_KEEP_DATABASES"):
        return
    with connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(base_settings: Settings, requested_db_variant: str | None) -> Iterator[Settings]:
    """Settings with a private topic prefix and a private, migrated database for this session."""
    with fresh_settings(base_settings, requested_db_variant) as test_settings:
        yield test_settings


@pytest.fixture(scope="session")
def db_variant(settings: Settings):
    """The session database's migration variant (``vreserve.db.Variant``: ``.name``, ``.reason``)."""
    from vreserve.db import choose_variant, connect

    with connect(settings.pg_dsn, autocommit=True) as conn:
        return choose_variant(conn)


@pytest.fixture
def unique() -> str:
    """A short unique token for names inside one test (topics, groups, client ids)."""
    return uuid.uuid4().hex[:8]


_SECRETS_AT_START = pytest.StashKey[dict]()


def _secrets_now() -> dict[str, str]:
    from vreserve.secret_scan import known_secrets

    try:
        settings = Settings.from_env()
    except Exception:  # noqa: BLE001 - a settings error is reported by the run itself
        return {}
    return known_secrets(settings.secrets_folder) if settings.secrets_folder.is_dir() else {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """The secrets as the run starts: tests rotate some (database roles, Kafka principals), and a
    log written before a rotation may hold the old value, which the end-of-run scan still seeks."""
    session.config.stash[_SECRETS_AT_START] = _secrets_now()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """At the end of a run, every log under the state folder and this run's temporary folders
    (components started by tests) is scanned for the installation's generated secrets, those
    rotated during the run included."""
    from vreserve.secret_scan import log_files, remember, scan

    try:
        settings = Settings.from_env()
    except Exception:  # noqa: BLE001 - a settings error was already reported by the run
        return
    secrets = remember(session.config.stash.get(_SECRETS_AT_START, {}), _secrets_now())
    if not secrets:
        return
    roots = [settings.state_dir]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        try:
            roots.append(factory.getbasetemp())
        except (OSError, ValueError):
            pass
    leaks = scan(secrets, log_files(roots))
    if leaks:
        for leak in leaks:
            print(f"SECRET IN LOG: {leak.secret} found in {leak.log}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def read_topic(settings: Settings, logical: str, done: Callable[[list], bool], timeout: float = 60.0) -> list:
    """Every record of a topic (all partitions, from the start) until ``done(records)`` or the
    timeout. The fetch limits take the largest records the poison tests send (2 MiB)."""
    topic = settings.topic(logical)
    consumer = kafka_clients.consumer(settings, ADMIN, enable_auto_commit=False, group_id=None,
                                      fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        parts = [TopicPartition(topic, p)
                 for p in sorted(consumer.partitions_for_topic(topic) or range(settings.partitions))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if done(records):
                break
        return records
    finally:
        consumer.close()
