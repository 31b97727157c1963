"""Assessments and audit plans over HTTP: the ranking is computed from the orders' status records
(the same code as `vreserve assess`), an owner token sees only its own sites; an audit plan drawn
over the API or the CLI is kept with its authenticated drawer and is in the audit trail."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import ROOT, settings_env
from vreserve import auditlog
from vreserve.db import connect
from vreserve.kafka_admin import ensure_topics

pytestmark = pytest.mark.services


def _trail(world, keep, n: int, timeout_s: float = 15.0) -> list[dict]:
    """The newest audit records that ``keep`` accepts, once there are ``n`` of them (the API appends
    a request's record just after its response, so a test reading at once may be early)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with connect(world.settings.pg_dsn, autocommit=True) as conn:
            rows = [r for r in auditlog.recent(conn, 200) if keep(r)]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _emergency_with_deliveries(world, delivered: dict[str, float]) -> str:
    """An ended emergency in apia: one 10-box supply order per site, delivered as given."""
    em = f"EM-assess-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source, ended_at, ended_by, end_reason) VALUES"
                     " (%s,'apia',%s,'user:seed','test',1,60,'wuhan',%s,'user:seed','over')",
                     (em, now - timedelta(minutes=30), now - timedelta(minutes=1)))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,'optimal')",
                     (f"P-{em}", em, now - timedelta(minutes=29)))
        for i, (site, qty) in enumerate(delivered.items()):
            oid = f"O-{em}-{i}"
            created = now - timedelta(minutes=29)
            conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin,"
                         " destination, material_id, qty, unit, created_at, status_at) VALUES"
                         " (%s,%s,%s,1,'supply',%s,'DC-A','medicine',10,'box',%s,%s)",
                         (oid, f"P-{em}", em, site, created, created))
            for k, (status, minutes, q) in enumerate([("in_transit", 2, qty), ("delivered", 6 + i, qty)]):
                conn.execute("INSERT INTO order_status_events (status_id, order_id, status, at, qty) VALUES"
                             " (%s,%s,%s,%s,%s)", (f"S-{oid}-{k}", oid, status, created + timedelta(minutes=minutes), q))
    return em


def test_assessment_ranks_sites_and_owners_with_units_and_owners_see_their_own(world):
    a0, a1 = world.sites["apia"][0], world.sites["apia"][1]
    em = _emergency_with_deliveries(world, {a0: 10.0, a1: 5.0})
    r = world.client("viewer").get("/api/v1/assessments", params={"emergency_id": em})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(s["rank"], s["site_id"]) for s in body["items"]] == [(1, a0), (2, a1)]
    assert [s["fulfilment_share"] for s in body["items"]] == [1.0, 0.5]
    assert [s["median_response_minutes"] for s in body["items"]] == [6.0, 7.0]
    assert body["items"][0]["score"] > body["items"][1]["score"]
    assert [o["owner_id"] for o in body["owners"]] == [f"owner-{a0}", f"owner-{a1}"]
    assert {k["owner_kind"]: k["sites"] for k in body["owner_kinds"]} == {"government": 1, "household": 1}
    assert set(body["units"]) >= {"score", "fulfilment_share", "median_response_minutes", "on_time_share"}
    assert body["weights"]["fulfilment"] == 0.5 and body["window"]["reading_interval_s"] > 0

    mine = world.client("owner").get("/api/v1/assessments", params={"emergency_id": em}).json()
    assert [s["site_id"] for s in mine["items"]] == [a0] and [o["owner_id"] for o in mine["owners"]] == [world.owner_id]
    assert mine["owner_kinds"] == []
    missing = world.client("viewer").get("/api/v1/assessments", params={"emergency_id": "EM-none"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "emergency_not_found"
    assert world.client("carrier-a").get("/api/v1/assessments").status_code == 403


def test_audit_plan_is_drawn_kept_and_reproducible_over_the_api_and_the_cli(world):
    sup = world.client("supervisor")
    drawn = sup.post("/api/v1/audit-plans", json={"count": 2, "seed": 7, "grid_cell": "apia-g0"})
    assert drawn.status_code == 201, drawn.text
    plan = drawn.json()
    assert plan["drawn_by"] == "user:supervisor1" and plan["seed"] == 7 and plan["count"] == 2
    assert len(plan["sites"]) == 2 and all(s["grid_cell"] == "apia-g0" and s["reasons"] for s in plan["sites"])
    assert all(0 < s["weight_share"] <= 1 and s["audited_by"] is None for s in plan["sites"])
    again = world.client("admin").post("/api/v1/audit-plans", json={"count": 2, "seed": 7, "grid_cell": "apia-g0"})
    assert again.status_code == 200 and again.json() == plan  # same inputs, same draw: the same plan
    other = sup.post("/api/v1/audit-plans", json={"count": 2, "seed": 8, "grid_cell": "apia-g0"}).json()
    listed = sup.get("/api/v1/audit-plans").json()["items"]
    assert {plan["plan_id"], other["plan_id"]} <= {p["plan_id"] for p in listed} and other["plan_id"] != plan["plan_id"]
    assert sup.get(f"/api/v1/audit-plans/{plan['plan_id']}").json()["sites"] == plan["sites"]
    assert world.client("operator").post("/api/v1/audit-plans", json={"count": 1}).status_code == 403
    assert world.client("owner").get("/api/v1/audit-plans").status_code == 403  # owners must not see spot checks
    nothing = sup.post("/api/v1/audit-plans", json={"count": 1, "grid_cell": "no-such-cell"})
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "no_sites"

    cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "audit", "plan", "--count", "1", "--seed", "7",
                          "--cell", "apia-g0"], cwd=ROOT, env=settings_env(world.settings), capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    plan_id = cli.stdout.split()[2].rstrip(":")
    kept = sup.get(f"/api/v1/audit-plans/{plan_id}").json()
    assert kept["drawn_by"].startswith("os-user:")
    assert [s["site_id"] for s in kept["sites"]] == [plan["sites"][0]["site_id"]]  # one code path, one draw
    api_rows = _trail(world, lambda r: r["action"] == "POST /api/v1/audit-plans" and r["actor"] == "user:admin1", 1)
    cli_rows = _trail(world, lambda r: r["action"] == "audit-plans.draw", 1)
    assert any(plan["plan_id"] in str(r["detail"]) for r in api_rows)
    assert any(plan_id in str(r["detail"]) and r["actor"].startswith("os-user:") for r in cli_rows)


def test_cli_audit_record_is_in_the_audit_trail(world):
    site = world.sites["apib"][0]
    audit_id = f"A-trail-{uuid.uuid4().hex[:8]}"
    cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "audit", "record", "--site", site, "--count",
                          "medicine=400", "--audit-id", audit_id], cwd=ROOT, env=settings_env(world.settings),
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        rows = [r for r in auditlog.recent(conn, 200) if r["action"] == "audits.record" and r["target"] == site]
    assert rows and rows[0]["outcome"] == "ok" and audit_id in str(rows[0]["detail"])


def test_cli_operator_commands_write_the_audit_trail_refusals_included(world):
    """alerts, movements, safety levels and alert webhooks from the shell: one audit-trail row each."""
    from click.testing import CliRunner

    from supervision import alerts_cli

    run, s, cell = CliRunner(), world.settings, "apib-g0"
    site = world.sites["apib"][1]
    assert run.invoke(alerts_cli.safety, ["set", "--cell", cell, "--material", "medicine", "--qty", "12"],
                      obj=s).exit_code == 0
    assert run.invoke(alerts_cli.safety, ["remove", "--cell", cell, "--material", "medicine"], obj=s).exit_code == 0
    gone = run.invoke(alerts_cli.safety, ["remove", "--cell", cell, "--material", "medicine"], obj=s)
    assert gone.exit_code == 1 and "no safety level" in gone.output
    moved = run.invoke(alerts_cli.movements, ["declare", "--site", site, "--material", "medicine", "--kind",
                                              "consumption", "--qty", "2", "--unit", "box"], obj=s)
    assert moved.exit_code == 0, moved.output
    ack = run.invoke(alerts_cli.alerts, ["ack", "no-such-alert"], obj=s)
    assert ack.exit_code == 1
    with connect(s.pg_dsn, autocommit=True) as conn:
        trail = [r for r in auditlog.recent(conn, 50) if r["actor"].startswith("os-user:")]
        assert auditlog.verify(conn).ok
    got = [(r["action"], r["target"], r["outcome"]) for r in reversed(trail)
           if r["action"].split(".")[0] in ("safety", "movements", "alerts")]
    assert got[-5:] == [("safety.set", f"{cell}/medicine", "ok"), ("safety.remove", f"{cell}/medicine", "ok"),
                        ("safety.remove", f"{cell}/medicine", "refused"), ("movements.declare", site, "ok"),
                        ("alerts.acknowledge", "no-such-alert", "refused")]


def test_safety_levels_over_the_api_with_the_actor_and_the_trail(world):
    sup, cell = world.client("supervisor"), "apia-g0"
    put = sup.put(f"/api/v1/safety-levels/{cell}/medicine", json={"safety_qty": 25})
    assert put.status_code == 200, put.text
    assert put.json() | {"set_at": None} == {"grid_cell": cell, "material_id": "medicine", "safety_qty": 25.0,
                                             "unit": "box", "set_by": "user:supervisor1", "set_at": None}
    listed = world.client("viewer").get("/api/v1/safety-levels", params={"grid_cell": cell}).json()["items"]
    assert [(lv["material_id"], lv["safety_qty"], lv["unit"]) for lv in listed] == [("medicine", 25.0, "box")]
    bad = sup.put("/api/v1/safety-levels/no-such-cell/medicine", json={"safety_qty": 1})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_safety_level"
    assert world.client("operator").put(f"/api/v1/safety-levels/{cell}/medicine", json={"safety_qty": 1}).status_code == 403
    assert sup.delete(f"/api/v1/safety-levels/{cell}/medicine").json()["removed"] is True
    again = sup.delete(f"/api/v1/safety-levels/{cell}/medicine")
    assert again.status_code == 404 and again.json()["error"]["code"] == "safety_level_not_found"
    trail = [(r["action"], r["outcome"], r["status"]) for r in
             _trail(world, lambda r: r["target"] == f"{cell}/medicine" and r["actor"] == "user:supervisor1", 3)]
    assert trail[:3] == [("DELETE /api/v1/safety-levels/apia-g0/medicine", "refused", 404),
                         ("DELETE /api/v1/safety-levels/apia-g0/medicine", "ok", 200),
                         ("PUT /api/v1/safety-levels/apia-g0/medicine", "ok", 200)]


#: A topic of this test's own: replayed test bytes must not reach another test's readers.
REPLAY_TOPIC = "api-test-replay"


def _quarantine(world, raw: bytes, offset: int) -> int:
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        return conn.execute(
            'INSERT INTO quarantined_records (consumer, topic, partition, "offset", key, raw, error, attempts,'
            " quarantined_at) VALUES ('test-consumer', %s, 0, %s, %s, %s, 'boom', 3, now()) RETURNING quarantine_id",
            (world.settings.topic(REPLAY_TOPIC), offset, b"k-" + raw[:8], raw)).fetchone()[0]


def test_quarantine_replay_over_the_api_and_the_cli_one_code_path(world):
    from tests.dispatcher.helpers import TopicReader

    ensure_topics(world.settings, [REPLAY_TOPIC])
    tag = uuid.uuid4().hex[:8]
    api_raw, cli_raw = f'{{"replay":"api-{tag}"}}'.encode(), f'{{"replay":"cli-{tag}"}}'.encode()
    api_id, cli_id = _quarantine(world, api_raw, 10_000_001), _quarantine(world, cli_raw, 10_000_002)
    op = world.client("operator")
    listed = {q["quarantine_id"]: q for q in op.get("/api/v1/quarantine").json()["items"]}
    assert listed[api_id]["error"] == "boom" and listed[api_id]["raw_b64"] and listed[api_id]["replayed_at"] is None
    assert world.client("viewer").post(f"/api/v1/quarantine/{api_id}/replay").status_code == 403
    # the API service's Kafka principal (vr-api) may write only its own topics (vreserve/kafka_access.py):
    # a record quarantined from any other topic is refused with the reason, and nothing is marked
    r = op.post(f"/api/v1/quarantine/{api_id}/replay")
    assert r.status_code == 403 and r.json()["error"]["code"] == "topic_not_permitted", r.text
    assert f"vreserve quarantine replay {api_id}" in r.json()["error"]["message"]
    listed = {q["quarantine_id"]: q for q in op.get("/api/v1/quarantine").json()["items"]}
    assert listed[api_id]["replayed_at"] is None
    # the administrator replays through the same code (vreserve/operations.py) from the CLI
    for qid in (api_id, cli_id):
        cli = subprocess.run([sys.executable, "-m", "vreserve.cli", "quarantine", "replay", str(qid)], cwd=ROOT,
                             env=settings_env(world.settings), capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0 and "marked replayed by os-user:" in cli.stdout, cli.stderr
    twice = op.post(f"/api/v1/quarantine/{api_id}/replay")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_replayed"
    reader = TopicReader(world.settings, REPLAY_TOPIC)
    try:
        reader.poll(3.0)
        assert [v for _k, v in reader.records if v in (api_raw, cli_raw)] == [api_raw, cli_raw]
    finally:
        reader.close()
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        trail = auditlog.recent(conn, 30)
    assert any(r["action"] == "quarantine.replay" and r["target"] == f"#{cli_id}" and r["outcome"] == "ok"
               for r in trail)


def test_alert_webhooks_over_the_api_secret_never_shown(world):
    adm, hook = world.client("admin"), f"pager-{uuid.uuid4().hex[:6]}"
    secret = "s3cret-" + uuid.uuid4().hex
    body = {"webhook_id": hook, "url": "http://127.0.0.1:9/pager", "secret": secret, "min_severity": "warning"}
    made = adm.post("/api/v1/alert-webhooks", json=body)
    assert made.status_code == 201 and made.json()["created_by"] == "user:admin1", made.text
    assert adm.post("/api/v1/alert-webhooks", json=body).json()["error"]["code"] == "webhook_exists"
    short = adm.post("/api/v1/alert-webhooks", json={**body, "webhook_id": hook + "x", "secret": "short"})
    assert short.status_code == 422
    listed = adm.get("/api/v1/alert-webhooks")
    assert [h["min_severity"] for h in listed.json()["items"] if h["webhook_id"] == hook] == ["warning"]
    assert secret not in listed.text and secret not in made.text
    assert world.client("supervisor").get("/api/v1/alert-webhooks").status_code == 403
    assert adm.delete(f"/api/v1/alert-webhooks/{hook}").json()["removed"] is True
    assert adm.delete(f"/api/v1/alert-webhooks/{hook}").status_code == 404
    trail = _trail(world, lambda r: r["target"] == hook, 4)
    assert secret not in str(trail)
    assert [r["outcome"] for r in trail][:4] == ["refused", "ok", "refused", "ok"]
