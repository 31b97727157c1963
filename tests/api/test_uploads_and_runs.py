"""Uploads and long runs over HTTP: a declaration with an uploaded demand file (multipart; the file
and the declaration checked before anything is published, the authenticated actor on the event),
contracts from an uploaded file (the CLI's reader and checks, all or nothing, every problem by row
and field), and a background settlement whose progress any caller with the role can watch. Each
write is in the audit trail with its actor, refused ones too."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.api.test_actions import _mode_records
from tests.api.test_supervision import _trail
from tests.dispatcher.helpers import SMALL_SCENARIO, make_region
from vreserve.db import connect

pytestmark = pytest.mark.services

DECLARE = "/api/v1/emergencies/with-demand-file"


@pytest.fixture(scope="module")
def apiu(world) -> list[str]:
    """A region of this module's own, not in emergency (other tests declare and end apia / apib)."""
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        return make_region(conn, "apiu", n_central=1, n_cells=1, per_cell=2).sites


def _form(region: str, periods: int = 2, **extra) -> dict:
    return {"region": region, "reason": "flood", "periods": str(periods), "period_length_s": "60", **extra}


def test_declare_with_an_uploaded_demand_file_checks_before_publishing(world, apiu):
    op = world.client("operator")
    good = Path(SMALL_SCENARIO).read_bytes()
    bad = op.post(DECLARE, data=_form("apiu"), files={"demand_file": ("d.yaml", b"periods: [not a scenario")})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_demand_file", bad.text
    too_long = op.post(DECLARE, data=_form("apiu", periods=40), files={"demand_file": ("d.yaml", good)})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "bad_demand_file", too_long.text
    no_file = op.post(DECLARE, data=_form("apiu"))
    assert no_file.status_code == 422 and no_file.json()["error"]["fields"][0]["field"] == "body.demand_file"
    bad_number = op.post(DECLARE, data=_form("apiu", periods=0), files={"demand_file": ("d.yaml", good)})
    assert bad_number.status_code == 422 and bad_number.json()["error"]["fields"][0]["field"] == "body.periods"
    unknown = op.post(DECLARE, data=_form("atlantis-u"), files={"demand_file": ("d.yaml", good)})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_region"
    as_json = op.post(DECLARE, json=_form("apiu"))
    assert as_json.status_code == 415 and as_json.json()["error"]["code"] == "unsupported_media_type"
    assert world.client("viewer").post(DECLARE, data=_form("apiu"),
                                       files={"demand_file": ("d.yaml", good)}).status_code == 403
    assert _mode_records(world, "apiu", 1.0) == []                       # nothing refused was published

    ok = op.post(DECLARE, data=_form("apiu", grid_cells="apiu-g0"), files={"demand_file": ("d.yaml", good)})
    assert ok.status_code == 202, ok.text
    assert (ok.json()["actor"], ok.json()["verdict"], ok.json()["kind"]) == ("user:operator1", "published", "declare")
    recs = [r for r in _mode_records(world, "apiu") if r["event_id"] == ok.json()["event_id"]]
    assert [(r["actor"], r["periods"], r["grid_cells"]) for r in recs] == [("user:operator1", 2, ["apiu-g0"])]
    assert recs[0]["demand_source"].endswith(".yaml") and "DF-" in recs[0]["demand_source"]

    trail = _trail(world, lambda row: row["action"] == f"POST {DECLARE}", 8)[:8]   # this test's 8 requests
    mine = [r for r in trail if r["actor"] == "user:operator1"]
    assert mine[0]["status"] == 202 and mine[0]["target"] == "apiu" and mine[0]["detail"]["demand_file_id"]
    assert sorted(r["status"] for r in mine[1:]) == [415, 422, 422, 422, 422, 422]
    assert any(r["actor"] == "user:viewer1" and r["status"] == 403 for r in trail)


def test_contracts_from_an_uploaded_file_all_or_nothing(world, apiu):
    u = uuid.uuid4().hex[:8]
    sup = world.client("supervisor")
    head = "contract_id,site_id,material_id,committed_qty,valid_from,valid_to,call_off_price_minor_per_unit\n"
    good = head + f"CF-{u}-0,{apiu[0]},medicine,40,2022-01-01,2022-12-31,300\nCF-{u}-1,{apiu[1]},medicine,12.5,2022-01-01,2022-12-31,\n"
    r = sup.post("/api/v1/contracts/file", files={"file": ("contracts.csv", good.encode())})
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["updated"]) == (2, 0)
    first = {i["contract_id"]: i for i in r.json()["items"]}[f"CF-{u}-0"]
    assert (first["committed_qty"], first["unit"], first["call_off_price_minor_per_unit"], first["currency"]) == (
        40.0, "box", 300, "CNY")
    assert first["source"] == "api:user:supervisor1:file:contracts.csv"

    bad = head + f"CF-{u}-2,{apiu[0]},medicine,-1,2023-01-01,2023-12-31,\nCF-{u}-3,{apiu[1]},medicine,5,2023-01-01,2023-12-31,\n"
    r = sup.post("/api/v1/contracts/file", files={"file": ("contracts.csv", bad.encode())})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "file.row.1.committed_qty", r.text
    with connect(world.settings.pg_dsn, autocommit=True) as conn:   # all or nothing: row 2 was fine, not stored
        assert conn.execute("SELECT count(*) FROM contracts WHERE contract_id LIKE %s", (f"CF-{u}-%",)).fetchone()[0] == 2
    yaml_doc = f"contracts:\n  - {{contract_id: CF-{u}-4, site_id: {apiu[0]}, material_id: medicine, committed_qty: 3," \
               f" valid_from: 2024-01-01, valid_to: 2024-06-30}}\n"
    assert sup.post("/api/v1/contracts/file", files={"file": ("c.yaml", yaml_doc.encode())}).status_code == 201
    odd = sup.post("/api/v1/contracts/file", files={"file": ("c.txt", b"x")})
    assert odd.status_code == 422 and "unknown file type" in odd.json()["error"]["message"]
    unknown_column = sup.post("/api/v1/contracts/file", files={"file": ("c.csv", b"site,qty\nx,1\n")})
    assert unknown_column.status_code == 422 and "unknown column" in unknown_column.json()["error"]["message"]
    assert world.client("operator").post("/api/v1/contracts/file",
                                         files={"file": ("c.csv", good.encode())}).status_code == 403
    trail = _trail(world, lambda row: row["action"] == "POST /api/v1/contracts/file", 6)
    assert [(t["actor"], t["status"]) for t in reversed(trail[:6])] == [
        ("user:supervisor1", 201), ("user:supervisor1", 422), ("user:supervisor1", 201),
        ("user:supervisor1", 422), ("user:supervisor1", 422), ("user:operator1", 403)]


def test_a_background_settlement_reports_its_progress_then_its_outcome(world, apiu):
    u = uuid.uuid4().hex[:8]
    em = f"EM-run-{u}"
    at = datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source, ended_at, ended_by, end_reason) VALUES"
                     " (%s,'apiu',%s,'user:seed','test',1,3600,'wuhan',%s,'user:seed','over')",
                     (em, at, at.replace(hour=20)))
    sup = world.client("supervisor")
    contract = {"contract_id": f"CR-{u}", "site_id": apiu[0], "material_id": "medicine", "committed_qty": 100,
                "valid_from": "2025-01-01", "valid_to": "2025-12-31", "standby_fee_minor_per_unit_day": 0.5}
    assert sup.post("/api/v1/contracts", json={"contracts": [contract]}).status_code == 201
    missing = sup.post("/api/v1/emergencies/EM-none/settlement-runs", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "emergency_not_found"
    assert world.client("operator").post(f"/api/v1/emergencies/{em}/settlement-runs", json={}).status_code == 403
    started = sup.post(f"/api/v1/emergencies/{em}/settlement-runs", json={})
    assert started.status_code == 202, started.text
    url = started.json()["progress"]
    assert url == f"/api/v1/settlement-runs/{started.json()['run_id']}"
    deadline = time.monotonic() + 60
    run = sup.get(url).json()
    while run["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        run = sup.get(url).json()
    assert (run["state"], run["outcome"], run["issued"], run["requested_by"]) == (
        "done", "statement", f"ST-{em}-v1", "user:supervisor1"), run
    messages = [s["message"] for s in run["steps"]]
    assert messages[0] == "started" and messages[-1] == f"done: statement ST-{em}-v1"
    assert any("line(s) computed" in m for m in messages) and run["elapsed_s"] >= 0 and not run["stalled"]
    assert [s["at"] for s in run["steps"]] == sorted(s["at"] for s in run["steps"])
    listed = sup.get("/api/v1/settlement/statements", params={"emergency_id": em}).json()["items"]
    assert [(s["statement_id"], s["issued_by"]) for s in listed] == [(f"ST-{em}-v1", "user:supervisor1")]
    assert sup.get("/api/v1/settlement-runs/SR-none").json()["error"]["code"] == "settlement_run_not_found"
    assert world.client("viewer").get(url).status_code == 403
    again = sup.post(f"/api/v1/emergencies/{em}/settlement-runs", json={}).json()["progress"]
    deadline = time.monotonic() + 60
    while (run := sup.get(again).json())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (run["state"], run["outcome"], run["issued"]) == ("done", "unchanged", None)


def test_admin_loads_a_registry_file_and_the_cli_load_is_in_the_trail(world, tmp_path):
    import subprocess
    import sys

    from tests.api.conftest import ROOT, settings_env
    from vreserve.registry import write_registry
    from vreserve.registry_generate import generate_registry

    u = uuid.uuid4().hex[:6]
    path = write_registry(generate_registry(4, seed=3, region=f"apir{u}", id_prefix=f"apir{u}-"), tmp_path / "reg.yaml")
    admin = world.client("admin")
    r = admin.post("/api/v1/registry", files={"file": ("reg.yaml", path.read_bytes())})
    assert r.status_code == 201, r.text
    assert r.json()["sites"] == 4 and r.json()["stored_rows"]["sites"] == 4
    sites = world.client("viewer").get("/api/v1/sites", params={"region": f"apir{u}"}).json()["items"]
    assert len(sites) == 4
    bad = admin.post("/api/v1/registry", files={"file": ("reg.yaml", b"sites: [1, 2]")})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_registry", bad.text
    assert world.client("supervisor").post("/api/v1/registry",
                                           files={"file": ("reg.yaml", path.read_bytes())}).status_code == 403
    trail = _trail(world, lambda row: row["action"] == "POST /api/v1/registry", 3)
    assert [(t["actor"], t["status"]) for t in reversed(trail[:3])] == [
        ("user:admin1", 201), ("user:admin1", 422), ("user:supervisor1", 403)]

    (tmp_path / "bad.yaml").write_text("sites: nope\n")
    env = settings_env(world.settings)
    ok = subprocess.run([sys.executable, "-m", "vreserve.cli", "registry", "load", str(path)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    refused = subprocess.run([sys.executable, "-m", "vreserve.cli", "registry", "load", str(tmp_path / "bad.yaml")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    cli = _trail(world, lambda row: row["action"] == "registry.load", 2)
    assert [(t["target"], t["outcome"], t["source"]) for t in reversed(cli[:2])] == [
        ("reg.yaml", "ok", "cli"), ("bad.yaml", "refused", "cli")]
    assert cli[1]["detail"]["sites"] == 4 and cli[0]["detail"]["code"] == "bad_registry"
