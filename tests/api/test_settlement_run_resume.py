"""A background settlement whose API process dies mid-run: a real `vreserve serve` subprocess is
killed (SIGKILL) while the run waits to store its statement; nothing was issued, and the next
servers to start (two at once) finish it, exactly one of them, with exactly one statement. A run
with no live instance reads `interrupted` and a supervisor may resume it at once. A run whose attempt stored its statement before
dying reports that statement when resumed, without issuing it again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import httpx
import pytest

from tests.api.conftest import PASSWORD, ROOT, _wait_up, free_port, settings_env, stop_server
from api.routes_settlement import RUN_LOCK_SQL, RUN_UNLOCK_SQL
from tests.api.test_supervision import _trail
from tests.dispatcher.helpers import make_region
from vreserve.db import connect

pytestmark = pytest.mark.services


def _serve(world, log_path):
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=settings_env(world.settings), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    _wait_up(url, proc, log_path)
    token = httpx.post(f"{url}/api/v1/auth/token", data={"username": "supervisor1", "password": PASSWORD}).json()
    return proc, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30)


def _wait(client, url, until, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while not until(run := client.get(url).json()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return run


def _emergency(conn, region: str, site: str, u: str) -> str:
    em = f"EM-resume-{u}"
    at = datetime(2025, 4, 1, 10, tzinfo=timezone.utc)
    conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                 " period_length_s, demand_source, ended_at, ended_by, end_reason) VALUES"
                 " (%s,%s,%s,'user:seed','test',1,3600,'wuhan',%s,'user:seed','over')",
                 (em, region, at, at.replace(hour=20)))
    conn.execute("INSERT INTO contracts (contract_id, site_id, material_id, committed_qty, valid_from, valid_to,"
                 " standby_fee_minor_per_unit_day) VALUES (%s,%s,'medicine',100,'2025-01-01','2025-12-31',0.5)",
                 (f"CR-{u}", site))
    return em


def _kill_mid_settlement(world, tmp_path, em: str) -> str:
    """Start a run on a real `vreserve serve`, hold it at its statement insert, SIGKILL the server;
    returns the run's progress URL once no live process holds the run's lock."""
    dsn = world.settings.pg_dsn
    doomed, sup = _serve(world, tmp_path / "doomed.log")
    blocker = connect(dsn)   # holds back every statement insert until the instance is dead
    try:
        blocker.execute("LOCK TABLE settlement_statements IN SHARE ROW EXCLUSIVE MODE")
        started = sup.post(f"/api/v1/emergencies/{em}/settlement-runs", json={})
        assert started.status_code == 202, started.text
        url = started.json()["progress"]
        run = _wait(sup, url, lambda r: any("line(s) computed" in s["message"] for s in r["steps"]))
        assert run["state"] == "running", run
        assert _wait_for_lock_wait(dsn), "the run never reached its statement insert"
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    finally:
        blocker.rollback()
        blocker.close()
    with connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM settlement_statements WHERE emergency_id = %s", (em,)).fetchone()[0] == 0
        deadline = time.monotonic() + 30   # the killed server's backend ends once it sees its client gone
        while not conn.execute(RUN_LOCK_SQL, (url.rsplit("/", 1)[-1],)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed instance's lock was never released"
            time.sleep(0.2)
        conn.execute(RUN_UNLOCK_SQL, (url.rsplit("/", 1)[-1],))
    return url


def test_a_killed_servers_run_is_finished_by_the_next_server_to_start_without_issuing_twice(world, tmp_path):
    """Two servers start together after the kill: exactly one of them resumes the run (its lock), it
    ends with one statement, and the service's resume is in the audit trail."""
    u = uuid.uuid4().hex[:8]
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        sites = make_region(conn, f"apir{u[:4]}", n_central=1, n_cells=1, per_cell=1).sites
        em = _emergency(conn, f"apir{u[:4]}", sites[0], u)
    url = _kill_mid_settlement(world, tmp_path, em)
    run_id = url.rsplit("/", 1)[-1]
    with ThreadPoolExecutor(2) as pool:   # N stateless instances starting at once
        survivors = list(pool.map(lambda i: _serve(world, tmp_path / f"survivor{i}.log"), range(2)))
    try:
        sup = survivors[0][1]
        run = _wait(sup, url, lambda r: r["state"] in ("done", "failed"), timeout=60)
        assert (run["state"], run["outcome"], run["issued"], run["requested_by"]) == (
            "done", "statement", f"ST-{em}-v1", "user:supervisor1"), run
        messages = [s["message"] for s in run["steps"]]
        resumes = [m for m in messages if m.startswith("resumed by API instance ")]
        assert messages[0] == "started" and len(resumes) == 1, messages
        assert messages[-1] == f"done: statement ST-{em}-v1"
        listed = sup.get("/api/v1/settlement/statements", params={"emergency_id": em}).json()["items"]
        assert [s["statement_id"] for s in listed] == [f"ST-{em}-v1"]
        with connect(world.settings.pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM settlement_statements WHERE emergency_id = %s",
                                (em,)).fetchone()[0] == 1
        trail = _trail(world, lambda r: r["action"] == "settlement-runs.resume" and r["target"] == run_id, 1)
        assert len(trail) == 1 and trail[0]["actor"].startswith("service:") and trail[0]["source"] == "sweep"
        again = sup.post(f"{url}/resume")
        assert again.status_code == 409 and again.json()["error"]["code"] == "settlement_run_finished"
    finally:
        for proc, _client in survivors:
            stop_server(proc, 15)


def test_an_interrupted_run_reads_interrupted_and_a_supervisor_may_resume_it(world):
    """Between the death of its instance and the next sweep (or with no instance restarted), the
    run reads `interrupted` on a live server, and a supervisor's resume runs it at once."""
    u = uuid.uuid4().hex[:8]
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        sites = make_region(conn, f"apiq{u[:4]}", n_central=1, n_cells=1, per_cell=1).sites
        em = _emergency(conn, f"apiq{u[:4]}", sites[0], u)
        run_id = f"SR-{u}"
        conn.execute("INSERT INTO settlement_runs (run_id, emergency_id, requested_by, steps) VALUES"
                     " (%s,%s,'user:supervisor1','[{\"at\": \"2025-01-01T00:00:00Z\", \"message\": \"started\"}]')",
                     (run_id, em))
    sup = world.client("supervisor")
    url = f"/api/v1/settlement-runs/{run_id}"
    run = sup.get(url).json()
    assert (run["state"], run["stalled"], run["resume"], run["outcome"]) == ("interrupted", True, f"{url}/resume", None)
    resumed = sup.post(f"{url}/resume")
    assert resumed.status_code == 202, resumed.text
    run = _wait(sup, url, lambda r: r["state"] in ("done", "failed"))
    assert (run["state"], run["outcome"], run["issued"]) == ("done", "statement", f"ST-{em}-v1"), run
    assert "resumed by user:supervisor1 after its API instance stopped" in [s["message"] for s in run["steps"]]
    again = sup.post(f"{url}/resume")
    assert again.status_code == 409 and again.json()["error"]["code"] == "settlement_run_finished"
    action = f"POST /api/v1/settlement-runs/{run_id}/resume"
    trail = _trail(world, lambda r: r["action"] == action, 2)
    assert sorted((r["actor"], r["status"]) for r in trail) == [("user:supervisor1", 202), ("user:supervisor1", 409)]


def _wait_for_lock_wait(dsn: str, timeout: float = 20.0) -> bool:
    """True once a backend waits for a lock on settlement_statements (the run's insert)."""
    deadline = time.monotonic() + timeout
    with connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM pg_locks WHERE relation = 'settlement_statements'::regclass"
                            " AND NOT granted").fetchone():
                return True
            time.sleep(0.1)
    return False


def test_a_resumed_run_reports_the_statement_its_interrupted_attempt_stored(world):
    """The attempt died after its statement was committed but before the run was marked done (the
    run row below is what such an instance leaves): resuming reports that statement, issues none."""
    u = uuid.uuid4().hex[:8]
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        sites = make_region(conn, f"apis{u[:4]}", n_central=1, n_cells=1, per_cell=1).sites
        em = _emergency(conn, f"apis{u[:4]}", sites[0], u)
    sup = world.client("supervisor")
    assert sup.post(f"/api/v1/emergencies/{em}/settlement", json={}).status_code == 201   # the attempt's statement
    run_id = f"SR-{u}"
    with connect(world.settings.pg_dsn, autocommit=True) as conn:   # fresh, so no sweep takes it before the GET
        conn.execute("INSERT INTO settlement_runs (run_id, emergency_id, requested_by, started_at, steps) VALUES"
                     " (%s,%s,'user:supervisor1',clock_timestamp() - interval '1 minute',"
                     " '[{\"at\": \"2025-01-01T00:00:00Z\", \"message\": \"started\"}]')", (run_id, em))
    url = f"/api/v1/settlement-runs/{run_id}"
    assert sup.get(url).json()["state"] == "interrupted"
    assert sup.post(f"{url}/resume").status_code == 202
    run = _wait(sup, url, lambda r: r["state"] in ("done", "failed"))
    assert (run["state"], run["outcome"], run["issued"]) == ("done", "statement", f"ST-{em}-v1"), run
    assert run["steps"][-1]["message"] == (f"done: statement ST-{em}-v1 (stored by an interrupted attempt of this run;"
                                           " not issued again)")
    listed = sup.get("/api/v1/settlement/statements", params={"emergency_id": em}).json()["items"]
    assert [s["statement_id"] for s in listed] == [f"ST-{em}-v1"]
