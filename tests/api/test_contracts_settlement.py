"""Contracts load and settlement over HTTP (the same code as `vreserve contracts load` / `vreserve
settle`): a supervisor loads contracts, all or nothing, with every problem a 422 naming the field;
a supervisor settles an emergency and settles again (unchanged), then after a late status (an
ADJUSTMENT); an owner reads only its own; each write is in the audit trail with its actor, and the
actor is on the statement. The expected money is computed by hand in the comments, not read back."""
from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.api.conftest import ROOT, settings_env
from tests.api.test_supervision import _trail
from tests.dispatcher.helpers import make_region
from vreserve import identity as ident
from vreserve.db import connect

pytestmark = pytest.mark.services


@dataclass
class Region:
    """A region of this module's own (other tests count apia's orders and contracts)."""

    sites: list[str]
    owner_id: str      # the owner of sites[0]
    owner_token: str

    def owner(self, world) -> httpx.Client:
        return httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {self.owner_token}"}, timeout=30)


@pytest.fixture(scope="module")
def apis(world) -> Region:
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        sites = make_region(conn, "apis", n_central=1, n_cells=1, per_cell=1).sites
        owner = conn.execute("SELECT owner_id FROM sites WHERE site_id = %s", (sites[0],)).fetchone()[0]
        token = ident.issue_token(conn, "owner", owner, datetime.now(timezone.utc) + timedelta(hours=2), "test")[1]
    return Region(sites, owner, token)


def _contract(cid: str, site: str, **terms) -> dict:
    return {"contract_id": cid, "site_id": site, "material_id": "medicine", "committed_qty": 100,
            "valid_from": "2020-01-01", "valid_to": "2020-12-31", **terms}


def _count(world, where: str, *args) -> int:
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT count(*) FROM contracts WHERE {where}", args).fetchone()[0]


def test_supervisor_loads_contracts_all_or_nothing_with_fields_and_the_trail(world, apis):
    a0, a1 = apis.sites[0], apis.sites[1]
    u = uuid.uuid4().hex[:8]
    sup = world.client("supervisor")
    good = [_contract(f"CT-{u}-0", a0, call_off_price_minor_per_unit=250, standby_fee_minor_per_unit_day=0.5,
                      penalty_grace_share=0.05, late_penalty_minor_per_unit=7),
            _contract(f"CT-{u}-1", a1, committed_qty=12.5)]
    r = sup.post("/api/v1/contracts", json={"contracts": good})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["added"], body["updated"]) == (2, 0)
    first = {i["contract_id"]: i for i in body["items"]}[f"CT-{u}-0"]
    assert (first["committed_qty"], first["unit"], first["currency"]) == (100.0, "box", "CNY")
    assert (first["call_off_price_minor_per_unit"], first["standby_fee_minor_per_unit_day"]) == (250, 0.5)
    assert (first["penalty_grace_share"], first["late_penalty_minor_per_unit"]) == (0.05, 7)
    assert first["source"] == "api:user:supervisor1"
    again = sup.post("/api/v1/contracts", json={"contracts": good[:1]})
    assert again.status_code == 201 and (again.json()["added"], again.json()["updated"]) == (0, 1)

    # One bad item refuses the whole load: every problem named by field, nothing stored.
    bad = [_contract(f"CT-{u}-2", a0, valid_from="2019-01-01", valid_to="2019-06-30"),
           _contract(f"CT-{u}-3", f"no-such-site-{u}", valid_from="2019-01-01", valid_to="2019-06-30"),
           _contract(f"CT-{u}-4", a1, valid_from="2020-06-01", valid_to="2020-06-30")]   # overlaps CT-1
    r = sup.post("/api/v1/contracts", json={"contracts": bad})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert [f["field"] for f in err["fields"]] == ["body.contracts.1.site_id"]
    assert f"unknown site 'no-such-site-{u}'" in err["fields"][0]["reason"]
    assert _count(world, "contract_id LIKE %s", f"CT-{u}-%") == 2
    r = sup.post("/api/v1/contracts", json={"contracts": [bad[0], bad[2]]})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "body.contracts.1.contract_id"
    assert f"overlaps CT-{u}-1" in r.json()["error"]["fields"][0]["reason"]
    assert _count(world, "contract_id LIKE %s", f"CT-{u}-%") == 2          # CT-2 rolled back with CT-4
    backwards = _contract(f"CT-{u}-5", a0, valid_from="2018-12-31", valid_to="2018-01-01")
    r = sup.post("/api/v1/contracts", json={"contracts": [backwards, _contract(f"CT-{u}-6", a0, committed_qty=-1)]})
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert "body.contracts.1.committed_qty" in fields, r.text      # the model's check
    r = sup.post("/api/v1/contracts", json={"contracts": [backwards]})
    assert r.status_code == 422 and r.json()["error"]["fields"] == [
        {"field": "body.contracts.0.valid_to", "reason": "item 1: valid_to 2018-01-01 is before valid_from 2018-12-31"}]

    # Owners read their own contracts; an operator may not load any.
    mine = apis.owner(world).get("/api/v1/contracts", params={"limit": 1000}).json()["items"]
    assert f"CT-{u}-0" in {c["contract_id"] for c in mine} and f"CT-{u}-1" not in {c["contract_id"] for c in mine}
    assert world.client("operator").post("/api/v1/contracts", json={"contracts": good}).status_code == 403
    trail = _trail(world, lambda row: row["action"] == "POST /api/v1/contracts"
                   and row["actor"] in ("user:supervisor1", "user:operator1"), 7)
    outcomes = [(row["actor"], row["outcome"], row["status"]) for row in reversed(trail[:7])]
    assert outcomes == [("user:supervisor1", "ok", 201)] * 2 + [("user:supervisor1", "refused", 422)] * 4 + [
        ("user:operator1", "refused", 403)]
    assert trail[6]["detail"]["contract_ids"] == [f"CT-{u}-0", f"CT-{u}-1"]
    assert trail[6]["detail"]["added"] == 2


def _emergency_2021(world, apis: Region, u: str) -> tuple[str, str, str]:
    """An ended one-day emergency in apis on 2021-03-01: a0 delivered 10 of 10 boxes; a1's 10-box
    order picked (5 on the truck) and still pending."""
    em = f"EM-settle-{u}"
    a0, a1 = apis.sites[0], apis.sites[1]
    at = datetime(2021, 3, 1, 10, tzinfo=timezone.utc)
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source, ended_at, ended_by, end_reason) VALUES"
                     " (%s,'apis',%s,'user:seed','test',1,3600,'wuhan',%s,'user:seed','over')",
                     (em, at, at.replace(hour=20)))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,"
                     "'optimal')", (f"P-{em}", em, at))
        for i, site in enumerate((a0, a1)):
            conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin,"
                         " destination, material_id, qty, unit, created_at, status_at) VALUES"
                         " (%s,%s,%s,1,'supply',%s,'DC-A','medicine',10,'box',%s,%s)",
                         (f"O-{em}-{i}", f"P-{em}", em, site, at.replace(minute=5), at.replace(minute=5)))
        events = [(f"S-{em}-0a", f"O-{em}-0", "in_transit", at.replace(minute=30), 10),
                  (f"S-{em}-0b", f"O-{em}-0", "delivered", at.replace(hour=12), 10),
                  (f"S-{em}-1a", f"O-{em}-1", "in_transit", at.replace(minute=40), 5)]
        for e in events:
            conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty) VALUES"
                         " (%s,%s,%s,%s,%s)", e)
    return em, a0, a1


def _late_delivery(world, em: str) -> None:
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty) VALUES"
                     " (%s,%s,'delivered',%s,5)", (f"S-{em}-1b", f"O-{em}-1", datetime(2021, 3, 1, 13, tzinfo=timezone.utc)))


def test_supervisor_settles_over_the_api_owner_reads_its_own(world, apis):
    u = uuid.uuid4().hex[:8]
    em, a0, a1 = _emergency_2021(world, apis, u)
    sup = world.client("supervisor")
    terms = {"valid_from": "2021-01-01", "valid_to": "2021-12-31"}
    loaded = sup.post("/api/v1/contracts", json={"contracts": [
        _contract(f"CS-{u}-0", a0, call_off_price_minor_per_unit=200, standby_fee_minor_per_unit_day=0.5, **terms),
        _contract(f"CS-{u}-1", a1, committed_qty=20, call_off_price_minor_per_unit=150, penalty_minor_per_unit=400,
                  **terms)]})
    assert loaded.status_code == 201, loaded.text

    r = sup.post(f"/api/v1/emergencies/{em}/settlement", json={})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["outcome"], doc["issued"], doc["currency"]) == ("statement", f"ST-{em}-v1", "CNY")
    # a0: 10 delivered x 200 = 2000, standby 100 x 1 day x 0.5 = 50; a1's order is pending: nothing yet
    assert doc["total_minor"] == 2050
    v1 = doc["versions"][0]
    assert (v1["issued_by"], v1["period_from"], v1["period_to"], v1["line_count"]) == (
        "user:supervisor1", "2021-03-01", "2021-03-01", 2)
    assert any(f"O-{em}-1" in w for w in doc["warnings"])
    assert [(d["owner_id"], d["ordered_qty"], d["delivered_qty"], d["unit"]) for d in doc["deliveries_per_owner"]] \
        == [(f"owner-{a0}", "10", "10", "box"), (f"owner-{a1}", "10", "0", "box")]

    same = sup.post(f"/api/v1/emergencies/{em}/settlement")
    assert same.status_code == 200 and same.json()["outcome"] == "unchanged" and same.json()["issued"] is None

    _late_delivery(world, em)
    adj = sup.post(f"/api/v1/emergencies/{em}/settlement", json={})
    assert adj.status_code == 201 and adj.json()["outcome"] == "adjustment", adj.text
    # a1: 5 delivered x 150 = 750; 5 short x 400 = -2000
    assert adj.json()["versions"][1]["total_minor"] == -1250
    assert adj.json()["versions"][1]["late_status_ids"] == [f"S-{em}-1b"]
    assert {o["owner_id"]: o["total_minor"] for o in adj.json()["per_owner"]} == {
        f"owner-{a0}": 2050, f"owner-{a1}": -1250}

    lines = sup.get(f"/api/v1/settlement/statements/ST-{em}-v2/lines").json()["items"]
    assert sorted((l["kind"], l["qty"], l["unit"], l["amount_minor"], l["currency"]) for l in lines) == [
        ("call_off", 5.0, "box", 750, "CNY"), ("shortfall_penalty", 5.0, "box", -2000, "CNY")]
    owner = apis.owner(world)
    assert apis.owner_id == f"owner-{a0}"
    mine = owner.get("/api/v1/settlement/statements", params={"emergency_id": em}).json()["items"]
    assert [(s["statement_id"], s["total_minor"], s["issued_by"]) for s in mine] == [
        (f"ST-{em}-v1", 2050, "user:supervisor1")]                 # v2 has no line of this owner
    assert owner.get(f"/api/v1/settlement/statements/ST-{em}-v2/lines").json()["items"] == []
    assert owner.post(f"/api/v1/emergencies/{em}/settlement", json={}).status_code == 403

    trail = _trail(world, lambda row: row["action"] == f"POST /api/v1/emergencies/{em}/settlement", 4)
    assert [(row["actor"], row["status"]) for row in reversed(trail)] == [
        ("user:supervisor1", 201), ("user:supervisor1", 200), ("user:supervisor1", 201), ("owner:" + apis.owner_id, 403)]
    assert trail[1]["detail"]["issued"] == f"ST-{em}-v2"


def test_settlement_refusals_are_clear(world, apis):
    u = uuid.uuid4().hex[:8]
    em, _, _ = _emergency_2021(world, apis, u)
    sup = world.client("supervisor")
    missing = sup.post("/api/v1/emergencies/EM-none/settlement", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "emergency_not_found"
    backwards = sup.post(f"/api/v1/emergencies/{em}/settlement", json={"period_from": "2021-03-02",
                                                                      "period_to": "2021-03-01"})
    assert backwards.status_code == 422
    assert backwards.json()["error"]["fields"][0]["field"] == "body"
    assert "period_to 2021-03-01 is before period_from 2021-03-02" in backwards.json()["error"]["fields"][0]["reason"]
    assert sup.post(f"/api/v1/emergencies/{em}/settlement", json={"period": "x"}).status_code == 422
    assert sup.post(f"/api/v1/emergencies/{em}/settlement", json={}).status_code == 201
    other = sup.post(f"/api/v1/emergencies/{em}/settlement", json={"period_from": "2021-02-01"})
    assert other.status_code == 409 and "same period" in other.json()["error"]["message"]


def test_cli_settle_and_contracts_load_write_the_audit_trail_with_the_actor(world, apis, tmp_path):
    """The CLI's settle goes through the same run: the os user is on the statement and in the trail."""
    u = uuid.uuid4().hex[:8]
    em, _, _ = _emergency_2021(world, apis, u)
    env = settings_env(world.settings)
    cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "settle", "--emergency", em, "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    listed = world.client("supervisor").get("/api/v1/settlement/statements", params={"emergency_id": em}).json()
    assert listed["items"][0]["issued_by"].startswith("os-user:")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"- {{site_id: no-site-{u}, material_id: medicine, committed_qty: 1, valid_from: 2021-01-01,"
                   f" valid_to: 2021-02-01}}\n")
    cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "contracts", "load", str(bad)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and f"item 1: unknown site 'no-site-{u}'" in cli.stderr
    settled = _trail(world, lambda row: row["action"] == "settlement.settle" and row["target"] == em, 1)
    assert settled and settled[0]["outcome"] == "ok" and settled[0]["detail"]["issued"] == f"ST-{em}-v1"
    refused = _trail(world, lambda row: row["action"] == "contracts.load" and row["target"] == "bad.yaml", 1)
    assert refused and refused[0]["outcome"] == "refused" and refused[0]["actor"].startswith("os-user:")
