"""Fixtures for the console's browser tests: a small live fleet on the real services (registry ->
simulated sites over MQTT -> bridge -> Kafka -> stream worker -> PostgreSQL, plus the dispatcher and
the simulated carrier),
`vreserve serve` with the console, people of two roles, and Debian's Chromium driven by Playwright.

Chromium is the machine's own (`/usr/bin/chromium`, installed by deploy/bootstrap.sh); Playwright's
browser download is never used. Screenshots of every page go to out/console/.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from vreserve.registry import write_registry
from vreserve.registry_generate import generate_registry
from vreserve import identity as ident
from vreserve.db import connect
from tests.conftest import fresh_settings
from vreserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "console"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (deploy/bootstrap.sh installs it)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "console test password"
#: Seconds between a simulated site's readings (the staleness rule is 3 of them).
INTERVAL_S = 2.0
N_SITES = 40
GRID = (3, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Fleet:
    """What the fixture started: the console's URL, the registry's facts the tests check against."""

    url: str
    settings: Settings
    region: str
    cells: set[str]
    sites: list[str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url, VR_PG_DSN=settings.pg_dsn,
               VR_TOPIC_PREFIX=settings.topic_prefix, VR_PARTITIONS=str(settings.partitions),
               VR_STATE_DIR=str(settings.state_dir), VR_MQTT_CA_FILE=settings.mqtt_ca_file,
               VR_READING_INTERVAL_S=str(INTERVAL_S), VR_LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1")
    return env


def _start(fleet: Fleet, name: str, *args: str) -> None:
    log = open(fleet.logs / f"{name}.log", "w")
    fleet.procs[name] = subprocess.Popen([sys.executable, "-m", "vreserve.cli", *args], cwd=ROOT,
                                         env=_env(fleet.settings), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_for(predicate, timeout: float, what: str, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


@pytest.fixture(scope="package")
def fleet(base_settings: Settings, requested_db_variant, tmp_path_factory) -> Iterator[Fleet]:
    """A live 40-site fleet on a database of its own: the map must show this registry's cells only,
    not those of every other test of the session."""
    with fresh_settings(base_settings, requested_db_variant) as settings:
        yield from _fleet(settings, tmp_path_factory)


def _fleet(settings: Settings, tmp_path_factory) -> Iterator[Fleet]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: deploy/bootstrap.sh installs Debian's chromium")
    if not (ROOT / "console" / "node_modules" / "leaflet").is_dir():
        pytest.fail("console/node_modules is missing: run `npm ci --prefix console` (deploy/bootstrap.sh does)")
    tmp = tmp_path_factory.mktemp("console")
    settings = settings.with_(reading_interval_s=INTERVAL_S)
    region = "wuhan"
    registry = generate_registry(N_SITES, seed=7, region=region, id_prefix=f"c{uuid.uuid4().hex[:6]}-", grid=GRID)
    reg_path = tmp / "registry.yaml"
    write_registry(registry, reg_path)
    port = free_port()
    fl = Fleet(url=f"http://127.0.0.1:{port}", settings=settings, region=region,
               cells={s.grid_cell for s in registry.sites.values()}, sites=sorted(registry.sites), logs=tmp)
    res = subprocess.run([sys.executable, "-m", "vreserve.cli", "registry", "load", str(reg_path)], cwd=ROOT,
                         env=_env(settings), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    with connect(settings.pg_dsn, autocommit=True) as conn:
        for name, role in (("operator1", "operator"), ("viewer1", "viewer"), ("supervisor1", "supervisor")):
            ident.add_user(conn, name, role, PASSWORD, "test")
    try:
        _start(fl, "stream", "stream", "run", "--web-port", str(free_port()), "--aggregate-interval", "2")
        _start(fl, "bridge", "ingest", "run", "--client-id", f"{settings.topic_prefix}console-bridge",
               "--end-session-on-stop")
        _start(fl, "fleet", "simulate", "sites", "--registry", str(reg_path), "--interval", str(INTERVAL_S),
               "--auth", "gateway", "--gateways", "1", "--end-sessions-on-stop")
        _start(fl, "dispatcher", "dispatch", "run", "--time-limit", "5")
        _start(fl, "logistics", "simulate", "logistics", "--accept", "1", "--pick", "2", "--deliver", "3",
               "--fail-rate", "0")
        _start(fl, "serve", "serve", "--addr", f"127.0.0.1:{port}")
        wait_for(lambda: _up(fl), 60, "vreserve serve")
        with connect(settings.pg_dsn, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(DISTINCT site_id) FROM stock_latest").fetchone()[0] >= N_SITES * 0.9,
                     120, "the fleet's readings in the database")
        yield fl
    finally:
        _stop(fl.procs)


def _up(fl: Fleet) -> bool:
    for name, p in fl.procs.items():
        if p.poll() is not None:
            raise AssertionError(f"{name} exited with {p.returncode}:\n{fl.log(name)}")
    try:
        return httpx.get(f"{fl.url}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def new_context(browser):
    """A browser context as an operator in Shanghai would have it (locale and time zone)."""
    return browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US", timezone_id="Asia/Shanghai")


@contextmanager
def console_page(browser) -> Iterator[tuple]:
    """A page in a fresh context, and the list its JavaScript errors are collected in (a test asserts
    it empty); the context is closed afterwards."""
    ctx = new_context(browser)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page, errors
    finally:
        ctx.close()


def login(page, fleet: Fleet, user: str) -> None:
    page.goto(fleet.url + "/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()
