"""Fixtures for the API tests: the real app under uvicorn on a free loopback port (a `vreserve serve`
subprocess on the session's database and topics), seeded with two regions, their orders, people of
every role and system tokens."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.dispatcher.helpers import make_region
from vreserve import identity as ident
from vreserve.db import connect, migrate
from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN
from vreserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
ROLES = ("viewer", "operator", "supervisor", "admin")


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url,
               VR_PG_DSN=settings.pg_dsn, VR_TOPIC_PREFIX=settings.topic_prefix,
               VR_PARTITIONS=str(settings.partitions), VR_STATE_DIR=str(settings.state_dir),
               VR_KAFKA_SECURITY=settings.kafka_security, VR_KAFKA_CA_FILE=str(kafka_clients.ca_file(settings)),
               VR_SECRETS_DIR=str(kafka_clients.secret_file(settings, ADMIN).parent), PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    """What the seed created: ids the tests address, and a bearer/API token per identity."""

    url: str
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)      # 'viewer'.., 'carrier-a', 'carrier-b', 'owner'
    orders: dict[str, list[str]] = field(default_factory=dict)  # region -> order ids
    emergencies: dict[str, str] = field(default_factory=dict)
    sites: dict[str, list[str]] = field(default_factory=dict)
    owner_id: str = ""
    alert_id: str = ""

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def _seed_orders(conn, region: str, sites: list[str]) -> tuple[str, list[str]]:
    now = datetime.now(timezone.utc)
    em = f"EM-{region}"
    conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                 " period_length_s, demand_source) VALUES (%s,%s,%s,'user:seed','test',2,60,'wuhan')",
                 (em, region, now - timedelta(minutes=1)))
    plan = f"P-{em}-001"
    conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status, objective, gap, solve_seconds,"
                 " summary) VALUES (%s,%s,1,%s,'optimal',1.5,0,0.1,%s)",
                 (plan, em, now, '{"materials": {"medicine": {"unit": "box", "due_with_backlog": 10,'
                                  ' "planned_shortage": 2}}, "orders": 2}'))
    ids = []
    for i, site in enumerate(sites[:2]):
        oid = f"O-{region}-{i}"
        conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                     " material_id, qty, unit, created_at, status_at) VALUES (%s,%s,%s,1,'supply',%s,'DC-A','medicine',"
                     " 10,'box',%s,%s)", (oid, plan, em, site, now, now))
        ids.append(oid)
    return em, ids


@pytest.fixture(scope="session")
def api_settings(settings: Settings, tmp_path_factory) -> Iterator[Settings]:
    """The session's topics, but a database of its own: the seeded regions, users and open
    emergencies must not show up in other areas' tests that count every site or region."""
    info = conninfo_to_dict(settings.pg_dsn)
    name = f"{info['dbname']}_api"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    private = settings.with_(pg_dsn=make_conninfo(**{**info, "dbname": name}),
                             state_dir=tmp_path_factory.mktemp("api-state"))
    migrate(private.pg_dsn)
    yield private
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def world(api_settings: Settings, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api")
    settings = api_settings
    port = free_port()
    w = World(url=f"http://127.0.0.1:{port}", settings=settings)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        for region in ("apia", "apib"):
            reg = make_region(conn, region, n_central=1, n_cells=1, per_cell=2)
            w.sites[region] = reg.sites
            w.emergencies[region], w.orders[region] = _seed_orders(conn, region, reg.sites)
        w.owner_id = conn.execute("SELECT owner_id FROM sites WHERE site_id = %s", (w.sites["apia"][0],)).fetchone()[0]
        w.alert_id = "stale:apia-test"
        conn.execute("INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, message, at) VALUES"
                     " (%s,'stale','warning',%s,'apia-g0','test alert',now())", (w.alert_id, w.sites["apia"][0]))
        for role in ROLES:
            ident.add_user(conn, f"{role}1", role, PASSWORD, "test")
        ident.add_carrier(conn, "carrier-a", "Carrier A", ["apia"])
        ident.add_carrier(conn, "carrier-b", "Carrier B", ["apib"])
        later = datetime.now(timezone.utc) + timedelta(days=1)
        w.tokens["carrier-a"] = ident.issue_token(conn, "carrier", "carrier-a", later, "test")[1]
        w.tokens["carrier-b"] = ident.issue_token(conn, "carrier", "carrier-b", later, "test")[1]
        w.tokens["owner"] = ident.issue_token(conn, "owner", w.owner_id, later, "test")[1]
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_up(w.url, proc, tmp / "serve.log")
        for role in ROLES:
            r = httpx.post(f"{w.url}/api/v1/auth/token", data={"username": f"{role}1", "password": PASSWORD})
            assert r.status_code == 200, r.text
            w.tokens[role] = r.json()["access_token"]
        yield w
    finally:
        stop_server(proc, 10)
        log.close()


def stop_server(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM a `vreserve serve`, SIGKILL it if it has not stopped within ``grace_s``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vreserve serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"vreserve serve did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")
