"""Operator and supervisor actions over HTTP and the CLI: one code path, the authenticated actor on
what is published, checks before anything is published, every attempt in the hash-chained audit
trail, and `vreserve audit-log verify` finding an edited row."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.api.conftest import ROOT, settings_env
from tests.dispatcher.helpers import SMALL_SCENARIO, TopicReader
from vreserve import auditlog, topics
from vreserve.db import connect, migrate

pytestmark = pytest.mark.services


def _mode_records(world, region: str, seconds: float = 3.0) -> list[dict]:
    reader = TopicReader(world.settings, topics.MODE)
    try:
        reader.poll(seconds)
        return [r for r in reader.json() if r.get("region") == region]
    finally:
        reader.close()


def _cli(world, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vreserve.cli", *args], cwd=ROOT, env=settings_env(world.settings),
                          capture_output=True, text=True, timeout=120)


def test_declare_is_checked_before_publishing_and_carries_the_authenticated_actor(world):
    op = world.client("operator")
    base = {"reason": "flood", "periods": 2, "period_length_s": 60, "scenario": "wuhan"}
    unknown = op.post("/api/v1/emergencies", json={**base, "region": "atlantis"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_region"
    busy = op.post("/api/v1/emergencies", json={**base, "region": "apia"})  # apia has an open emergency
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "already_in_emergency"
    claimed = op.post("/api/v1/emergencies", json={**base, "region": "apia", "actor": "minister-of-health"})
    assert claimed.status_code == 422 and claimed.json()["error"]["fields"][0]["field"] == "body.actor"
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE emergencies SET ended_at = now(), ended_by = 'test', end_reason = 'x'"
                     " WHERE emergency_id = 'EM-apib'")
    nopack = op.post("/api/v1/emergencies", json={**base, "region": "apib", "scenario": "no-such-pack"})
    assert nopack.status_code == 422 and nopack.json()["error"]["code"] == "bad_demand_source"
    assert _mode_records(world, "atlantis", 1.0) == []
    ok = op.post("/api/v1/emergencies", json={**base, "region": "apib"})
    assert ok.status_code == 202, ok.text
    assert ok.json()["actor"] == "user:operator1" and ok.json()["verdict"] == "published"
    recs = _mode_records(world, "apib")
    assert [r["actor"] for r in recs if r["event_id"] == ok.json()["event_id"]] == ["user:operator1"]
    assert world.client("viewer").post("/api/v1/emergencies", json={**base, "region": "apib"}).status_code == 403


def test_demand_update_is_published_for_an_open_emergency(world):
    op = world.client("operator")
    em = world.emergencies["apia"]
    r = op.post(f"/api/v1/emergencies/{em}/demand", json={"rescue_centre": "RC-1", "material": "medicine",
                                                          "period": 2, "qty": 480})
    assert r.status_code == 202, r.text
    assert r.json()["unit"] == "box" and r.json()["region"] == "apia"
    assert op.post(f"/api/v1/emergencies/{em}/demand", json={"rescue_centre": "RC-1", "material": "medicine",
                                                             "period": 9, "qty": 1}).json()["error"]["code"] == "bad_period"
    reader = TopicReader(world.settings, topics.DEMAND)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(x["update_id"] == r.json()["update_id"] for x in reader.json()):
            reader.poll(0.5)
        assert any(x["update_id"] == r.json()["update_id"] and x["qty"] == 480 for x in reader.json())
    finally:
        reader.close()


def test_uploaded_demand_file_is_checked_then_declarable(world):
    op = world.client("operator")
    bad = op.post("/api/v1/demand-files", content=b"periods: [not a scenario", headers={"Content-Type": "application/yaml"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_demand_file"
    assert "/" not in bad.json()["error"]["message"].split("uploaded file")[0][-5:]  # no server path leaks
    with open(SMALL_SCENARIO, "rb") as f:
        up = op.post("/api/v1/demand-files", content=f.read(), headers={"Content-Type": "application/yaml"})
    assert up.status_code == 201, up.text
    too_long = op.post("/api/v1/emergencies", json={"region": "apib", "reason": "x", "periods": 9,
                                                    "period_length_s": 60, "demand_file_id": up.json()["demand_file_id"]})
    assert too_long.status_code in (409, 422)  # 4-period file (or apib busy from the test before)
    huge = op.post("/api/v1/demand-files", content=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/yaml"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"


def test_cli_declare_goes_through_the_same_checks_and_audit_trail(world):
    r = _cli(world, "emergency", "declare", "--region", "atlantis", "--scenario", "wuhan", "--periods", "2",
             "--period-length", "1m", "--reason", "cli test", "--wait", "0")
    assert r.returncode != 0 and "unknown_region" in r.stderr and "nothing was published" in r.stderr
    rows = world.client("admin").get("/api/v1/audit-log", params={"limit": 50}).json()["items"]
    cli_rows = [x for x in rows if x["action"] == "emergency.declare" and x["target"] == "atlantis"]
    assert cli_rows and cli_rows[0]["actor"].startswith("os-user:") and cli_rows[0]["outcome"] == "refused"


def test_supervisor_records_an_audit_and_suspends_a_site_as_itself(world):
    sup = world.client("supervisor")
    site = world.sites["apia"][1]
    r = sup.post("/api/v1/audits", json={"site_id": site, "counts": [{"material": "medicine", "counted_qty": 10}],
                                         "auditor": "someone-else"})
    assert r.status_code == 422  # no claimed auditor name
    r = sup.post("/api/v1/audits", json={"site_id": site, "counts": [{"material": "medicine", "counted_qty": 10}]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["auditor"] == "user:supervisor1" and body["passed"] is False and body["status_after"] == "suspended"
    alerts = TopicReader(world.settings, topics.ALERTS)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(a["alert_id"] in body["alerts"] for a in alerts.json()):
            alerts.poll(0.5)
        assert body["alerts"] and any(a["alert_id"] == body["alerts"][0] for a in alerts.json())
    finally:
        alerts.close()
    stored = world.client("viewer").get(f"/api/v1/audits/{body['audit_id']}").json()
    assert stored["auditor"] == "user:supervisor1" and stored["counts"][0]["unit"] == "box"
    again = sup.post("/api/v1/sites/" + site + "/reinstate", json={"reason": "recount ordered"})
    assert again.status_code == 200 and again.json()["status"] == "active"
    assert world.client("operator").post(f"/api/v1/sites/{site}/suspend", json={"reason": "x"}).status_code == 403


def test_every_write_is_in_the_audit_trail_refused_ones_too(world):
    anon = httpx.post(f"{world.url}/api/v1/emergencies", json={"region": "apia"})
    assert anon.status_code == 401
    viewer = world.client("viewer").post(f"/api/v1/sites/{world.sites['apia'][0]}/suspend", json={"reason": "x"})
    assert viewer.status_code == 403
    badlogin = httpx.post(f"{world.url}/api/v1/auth/token", data={"username": "admin1", "password": "nope nope"})
    assert badlogin.status_code == 401
    rows = world.client("admin").get("/api/v1/audit-log", params={"limit": 20}).json()["items"]
    assert any(x["actor"] == "anonymous" and x["status"] == 401 and x["action"] == "POST /api/v1/emergencies"
               for x in rows)
    assert any(x["actor"] == "user:viewer1" and x["status"] == 403 and x["outcome"] == "refused" for x in rows)
    assert any(x["actor"] == "anonymous (claimed admin1)" and x["action"] == "POST /api/v1/auth/token" for x in rows)
    assert all(x["source"] for x in rows)
    verify = world.client("admin").get("/api/v1/audit-log/verify").json()
    assert verify["ok"] and verify["rows"] >= len(rows)


def test_audit_log_verify_finds_an_edited_row(settings):
    """Own database: the test breaks the chain on purpose."""
    info = conninfo_to_dict(settings.pg_dsn)
    name = f"vr_test_auditlog_{uuid.uuid4().hex[:6]}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(**{**info, "dbname": name})
    try:
        migrate(dsn)
        with connect(dsn, autocommit=True) as conn:
            for i in range(5):
                auditlog.append(conn, f"user:u{i}", "127.0.0.1", "POST /api/v1/x", "ok", 200, f"t{i}", {"i": i})
            assert auditlog.verify(conn).ok
            with pytest.raises(Exception, match="append-only"):
                conn.execute("UPDATE audit_log SET actor = 'user:eve' WHERE seq = 3")
            env = settings_env(settings.with_(pg_dsn=dsn))
            cmd = [sys.executable, "-m", "vreserve.cli", "audit-log", "verify"]
            good = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert good.returncode == 0 and "5 record(s)" in good.stdout
            # Someone with the table owner's rights edits history behind the trigger's back.
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            conn.execute("UPDATE audit_log SET actor = 'user:eve' WHERE seq = 3")
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
            bad = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert bad.returncode == 1 and "record 3" in bad.stderr and "changed" in bad.stderr
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            conn.execute("DELETE FROM audit_log WHERE seq = 2")
            r = auditlog.verify(conn)
            assert not r.ok and r.first_bad_seq == 3 and "missing" in r.problem
    finally:
        with connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_errors_have_stable_codes_and_never_a_stack_trace(world):
    v = world.client("viewer")
    r = v.get("/api/v1/orders", params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "query.limit"
    r = v.get("/api/v1/sites/no-such-site")
    assert r.status_code == 404 and r.json()["error"]["code"] == "site_not_found"
    r = v.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = v.get("/api/v1/stock", params={"at": "2026-01-01T00:00:00"})
    assert r.status_code == 422
    r = v.get("/api/v1/sites", params={"region": "a\x00b"})
    assert r.status_code == 422 and "Traceback" not in r.text
    page = v.get("/api/v1/sites", params={"limit": 2}).json()
    assert set(page) == {"items", "limit", "offset", "next_offset"} and page["next_offset"] == 2
    stock = v.get("/api/v1/stock", params={"grid_cell": "apia-g0"}).json()
    assert stock["items"] and all(i["unit"] for i in stock["items"])
    t0 = time.monotonic()
    assert v.get("/api/v1/emergencies/EM-apia/plans").json()["items"][0]["materials"]["medicine"]["shortage_rate"] == 0.2
    assert time.monotonic() - t0 < 10
