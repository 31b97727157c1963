"""Audits: numbers without goods lower trust (and so what the planner takes), suspend, reinstate;
bad audit records get a clear error and change nothing; the audits topic is consumed idempotently."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from dispatcher.snapshot import supply_snapshot
from supervision import cli as sup_cli
from supervision import sql_audits
from vreserve.trust import TrustPolicy, apply_audit
from sv_helpers import add_contract, add_emergency, add_site, add_stock
from vreserve import topics
from vreserve.schemas.audits import AuditRecord
from vreserve.schemas.common import SchemaError

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()


def _audit(audit_id: str, site_id: str, counts: dict[str, float], at: datetime | None = None) -> AuditRecord:
    return AuditRecord.from_payload({
        "v": 1, "audit_id": audit_id, "site_id": site_id, "auditor": "inspector-7",
        "at": (at or NOW).isoformat().replace("+00:00", "Z"),
        "counts": [{"material": m, "counted_qty": q} for m, q in counts.items()]})


def _available(conn, w, site_id: str) -> int | None:
    rows = supply_snapshot(conn, w.region, NOW)
    found = [r.available for r in rows if r.site_id == site_id and r.material_id == w.masks]
    return found[0] if found else None


def _two_sites(conn, w):
    a, b = f"A-{w.u}", f"B-{w.u}"
    for s in (a, b):
        add_site(conn, w, s, f"own-{s}")
        add_contract(conn, f"C-{s}", s, w.masks, 1000, TODAY - timedelta(days=10), TODAY + timedelta(days=300),
                     call_off=100)
        add_stock(conn, s, w.masks, 1000, "box")
    return a, b


def test_trust_rules_hand_checked():
    p = TrustPolicy()
    # 1000 reported, 200 counted: 80% missing -> trust 1.0 x 0.2 = 0.2 < 0.5 -> suspended
    ch = apply_audit(1.0, "active", [("m", 1000, 200)], p)
    assert (ch.passed, ch.shortfall_share, ch.trust_after, ch.status_after) == (False, 0.8, 0.2, "suspended")
    # 1000 reported, 950 counted: 5% missing is inside the 10% tolerance -> pass, trust capped at 1
    assert apply_audit(0.9, "active", [("m", 1000, 950)], p).trust_after == 1.0
    # 10 reported, 9 counted: 10% is not above tolerance -> pass
    assert apply_audit(1.0, "active", [("m", 10, 9)], p).passed
    # a small miss on one material still costs at least the tolerance share: 0.8 x 0.9 = 0.72
    ch = apply_audit(0.8, "active", [("a", 1000, 1000), ("b", 20, 10)], p)
    assert not ch.passed and ch.trust_after == pytest.approx(0.72) and ch.status_after == "active"
    # a passing audit reinstates a suspended site at no less than the threshold
    ch = apply_audit(0.2, "suspended", [("m", 500, 520)], p)
    assert (ch.passed, ch.trust_after, ch.status_after) == (True, 0.5, "active")


def test_audit_lowers_trust_and_planner_snapshot_suspends_and_reinstates(conn, world):
    a, b = _two_sites(conn, world)
    assert _available(conn, world, a) == 1000 and _available(conn, world, b) == 1000

    # B holds 700 of the 1000 it reports: trust 0.7, the planner now counts on 700.
    rb = sql_audits.record_audit(conn, _audit(f"au-b-{world.u}", b, {world.masks: 700}), "test")
    assert (rb.passed, rb.trust_after, rb.status_after) == (False, 0.7, "active")
    assert _available(conn, world, b) == 700

    # A holds 100 of 1000: trust 0.1, suspended: never in the snapshot the planner plans from.
    ra = sql_audits.record_audit(conn, _audit(f"au-a-{world.u}", a, {world.masks: 100}), "test")
    assert (ra.passed, ra.trust_after, ra.status_after) == (False, 0.1, "suspended")
    assert _available(conn, world, a) is None
    assert len(ra.alerts) == 1 and ra.alerts[0]["severity"] == "critical"
    alert = conn.execute("SELECT kind, site_id, material_id, resolved_at FROM alerts WHERE alert_id = %s",
                         (ra.alerts[0]["alert_id"],)).fetchone()
    assert alert == ("audit_discrepancy", a, world.masks, None)
    disc = conn.execute("SELECT reported_qty, counted_qty FROM audit_discrepancies WHERE site_id = %s", (a,)).fetchall()
    assert [(float(r), float(c)) for r, c in disc] == [(1000.0, 100.0)]

    # The same audit again (a replay) changes nothing.
    again = sql_audits.record_audit(conn, _audit(f"au-a-{world.u}", a, {world.masks: 100}), "test")
    assert again.duplicate and conn.execute("SELECT trust, status FROM sites WHERE site_id = %s", (a,)).fetchone() \
        == (0.1, "suspended")

    # A passing audit reinstates A at the threshold trust; its discrepancy alert is resolved.
    rp = sql_audits.record_audit(conn, _audit(f"au-a2-{world.u}", a, {world.masks: 1000},
                                              NOW + timedelta(minutes=5)), "test")
    assert (rp.passed, rp.trust_after, rp.status_after) == (True, 0.5, "active")
    assert _available(conn, world, a) == 500
    assert conn.execute("SELECT resolved_at IS NOT NULL, published_at IS NULL FROM alerts WHERE alert_id = %s",
                        (ra.alerts[0]["alert_id"],)).fetchone() == (True, True)  # resolved, in the outbox again
    assert ra.alerts[0]["alert_id"] in [x["alert_id"] for x in sql_audits.pending_alerts(conn, limit=100000)]


def _scenario_file(tmp_path, w) -> str:
    doc = {
        "name": f"sv-{w.u}", "periods": 2,
        "materials": [{"id": w.masks, "unit": "box", "price": 5, "urgency": 0.9},
                      {"id": w.water, "unit": "l", "price": 1, "urgency": 0.1}],
        "supply_sites": [{"id": "placeholder", "supply": {w.masks: 0, w.water: 0}}],
        "distribution_centres": [{"id": "DC-A", "capacity": 100000, "initial": {w.masks: 0, w.water: 0}}],
        "rescue_centres": [{"id": "RC-1", "demand": {w.masks: [5000, 5000], w.water: [0, 0]}}],
    }
    path = tmp_path / "demand.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.slow
def test_next_plan_takes_less_from_a_distrusted_site_and_nothing_from_a_suspended_one(conn, world, tmp_path):
    """Through the dispatcher's own re-plan (snapshot -> optimizer -> orders), not just the SQL rule."""
    from dispatcher import book
    from dispatcher.planning import PlannerCache, make_plan

    a, b = _two_sites(conn, world)
    em = f"E-{world.u}"
    add_emergency(conn, world, em, NOW - timedelta(minutes=1), None, periods=2, period_length_s=3600)
    conn.execute("UPDATE emergencies SET demand_source = %s WHERE emergency_id = %s",
                 (_scenario_file(tmp_path, world), em))
    emergency = book.get_emergency(conn, em)
    cache = PlannerCache(time_limit_s=20)

    def picks() -> dict[str, float]:
        planned = make_plan(conn, emergency, 1, cache, NOW)
        assert planned.summary.status in ("optimal", "feasible"), planned.summary.message
        out: dict[str, float] = {}
        for o in planned.orders:
            if o.leg == "supply" and o.material == world.masks:
                out[o.origin] = out.get(o.origin, 0) + o.qty
        return out

    # Demand 5000 > supply, so the plan takes everything it is offered, and in period 1 (what a
    # centre receives in period 2, the last, cannot be delivered within the horizon).
    before = picks()
    assert before.get(a, 0) == 1000 and before.get(b, 0) == 1000  # 1000 x trust 1.0
    sql_audits.record_audit(conn, _audit(f"au-a-{world.u}", a, {world.masks: 600}), "test")  # trust 0.6
    after = picks()
    assert after.get(a, 0) == 600 and after.get(b, 0) == 1000     # 1000 x 0.6
    sql_audits.record_audit(conn, _audit(f"au-a2-{world.u}", a, {world.masks: 100}), "test")  # 0.6 x 0.1 -> suspended
    assert conn.execute("SELECT status FROM sites WHERE site_id = %s", (a,)).fetchone()[0] == "suspended"
    suspended = picks()
    assert a not in suspended and suspended.get(b, 0) == 1000


def test_bad_audit_records_get_a_clear_error_and_change_nothing(conn, world, settings, tmp_path):
    a, _ = _two_sites(conn, world)
    runner = CliRunner()
    n_audits = conn.execute("SELECT count(*) FROM audits").fetchone()[0]

    def run(*args):
        return runner.invoke(sup_cli.audit, ["record", *args], obj=settings)

    res = run("--site", f"nosuch-{world.u}", "--count", f"{world.masks}=5")
    assert res.exit_code == 1 and f"unknown site 'nosuch-{world.u}'" in res.output
    res = run("--site", a, "--count", f"{world.masks}=-5")
    assert res.exit_code == 1 and "must be >= 0" in res.output
    res = run("--site", a, "--count", f"nosuch-{world.u}=5")
    assert res.exit_code == 1 and "unknown material" in res.output
    res = run("--site", a, "--count", f"{world.masks}=lots")
    assert res.exit_code == 1 and "not a number" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": 1, "audit_id": "x", "site_id": "' + a + '", "auditor": "i", "at": "yesterday", "counts": []}')
    res = run("--json", str(bad))
    assert res.exit_code == 1 and "RFC 3339" in res.output
    assert conn.execute("SELECT count(*) FROM audits").fetchone()[0] == n_audits
    assert conn.execute("SELECT trust FROM sites WHERE site_id = %s", (a,)).fetchone()[0] == 1.0

    ok = run("--site", a, "--count", f"{world.masks}=1000", "--audit-id", f"ok-{world.u}")
    assert ok.exit_code == 0 and "PASSED" in ok.output, ok.output
    with pytest.raises(SchemaError, match="counted twice"):
        AuditRecord.from_payload({"v": 1, "audit_id": "x", "site_id": a, "auditor": "i", "at": "2026-11-22T08:00:00Z",
                                  "counts": [{"material": "m", "counted_qty": 1}, {"material": "m", "counted_qty": 2}]})


@pytest.mark.services
def test_audits_topic_applies_good_records_once_and_rejects_bad_ones(conn, world, settings, unique):
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from supervision import audit_topic

    from vreserve.kafka_admin import ensure_topics

    settings = settings.with_(topic_prefix=f"{settings.topic_prefix}{unique}.")  # the audits topic to itself
    ensure_topics(settings)
    a, b = _two_sites(conn, world)
    good = _audit(f"tp-{unique}", a, {world.masks: 300}).to_json()
    records = [
        (a, good),
        (a, good),                                                             # replayed: counts once
        (a, b"{not json"),
        (f"ghost-{unique}", _audit(f"tp-g-{unique}", f"ghost-{unique}", {world.masks: 1}).to_json()),
        (b, good),                                                             # key is not the record's site
        (b, json.dumps({"v": 1, "audit_id": f"tp-n-{unique}", "site_id": b, "auditor": "i",
                        "at": "2026-11-22T08:00:00Z",
                        "counts": [{"material": world.masks, "counted_qty": -3}]}).encode()),
    ]
    audit_topic.publish_audits(settings, [r[1] for r in records], [r[0] for r in records])
    stats = audit_topic.consume(settings, group=settings.group(f"supervision-test-{unique}"), max_records=len(records), idle_timeout_s=20)
    assert (stats.applied, stats.duplicates, stats.rejected, stats.discrepancies) == (1, 1, 4, 2)
    reasons = [r[0] for r in conn.execute(
        "SELECT reason FROM audit_rejections WHERE raw IN (%s, %s, %s, %s) ORDER BY rejection_id",
        [r[1] for r in records[2:]]).fetchall()]
    assert len(reasons) == 4
    text = " | ".join(reasons)
    assert "not valid JSON" in text and f"unknown site 'ghost-{unique}'" in text
    assert "keyed" in text and "must be >= 0" in text
    assert conn.execute("SELECT trust, status FROM sites WHERE site_id = %s", (a,)).fetchone() == (0.3, "suspended")
    assert conn.execute("SELECT trust FROM sites WHERE site_id = %s", (b,)).fetchone()[0] == 1.0

    # The discrepancy alert went out on the alerts topic, keyed by site.
    consumer = kafka_clients.consumer(settings, ADMIN, settings.topic(topics.ALERTS), group_id=f"sv-alerts-{unique}", auto_offset_reset="earliest", enable_auto_commit=False)
    want = sql_audits.alert_id(f"tp-{unique}", world.masks)
    seen = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and want not in seen:
            for msgs in consumer.poll(timeout_ms=500).values():
                seen += [json.loads(m.value)["alert_id"] for m in msgs if m.key == a.encode()]
    finally:
        consumer.close()
    assert want in seen


def test_reloading_the_registry_does_not_undo_an_audit(conn, world, tmp_path):
    """The registry file says trust 1.0 / active; an audited site keeps what its audits made it."""
    from vreserve.registry import load_registry
    from vreserve.registry_store import store_registry

    a, b = _two_sites(conn, world)
    sql_audits.record_audit(conn, _audit(f"rr-{world.u}", a, {world.masks: 100}), "test")
    assert conn.execute("SELECT trust, status FROM sites WHERE site_id = %s", (a,)).fetchone() == (0.1, "suspended")
    sites = "\n".join(
        f"  - {{id: {s}, name: {s}, owner_id: own-{s}, owner_kind: enterprise, tier: centralized, parent: null,"
        f" region: {world.region}, grid_cell: {world.cell}, lat: 30.5, lon: 114.3, status: active, trust: {t},"
        f" materials: {{{world.masks}: 1000}}}}" for s, t in ((a, 1.0), (b, 0.9)))
    path = tmp_path / "registry.yaml"
    path.write_text(f"version: 1\nmaterials:\n  - {{id: {world.masks}, name: Masks, unit: box, class: protective,"
                    f" consumable: true}}\nsites:\n{sites}\n")
    store_registry(conn, load_registry(path))
    assert conn.execute("SELECT trust, status FROM sites WHERE site_id = %s", (a,)).fetchone() == (0.1, "suspended")
    assert conn.execute("SELECT trust FROM sites WHERE site_id = %s", (b,)).fetchone()[0] == 0.9  # never audited


def test_cli_audit_is_recorded_even_when_kafka_is_down(conn, world, settings):
    """The audit and its alert are in the database; the stream's alert outbox publishes the alert later."""
    a, _ = _two_sites(conn, world)
    down = settings.with_(kafka_bootstrap="127.0.0.1:9")
    res = CliRunner().invoke(sup_cli.audit, ["record", "--site", a, "--count", f"{world.masks}=10",
                                             "--audit-id", f"kd-{world.u}"], obj=down)
    assert res.exit_code == 0, res.output
    assert "FAILED" in res.output and "not published" in res.output
    row = conn.execute("SELECT published_at FROM alerts WHERE alert_id = %s",
                       (sql_audits.alert_id(f"kd-{world.u}", world.masks),)).fetchone()
    assert row == (None,)


@pytest.mark.services
def test_audit_consume_command(conn, world, settings, unique):
    from supervision import audit_topic

    a, _ = _two_sites(conn, world)
    audit_topic.publish_audits(settings, [_audit(f"cc-{unique}", a, {world.masks: 990}).to_json()], [a])
    res = CliRunner().invoke(sup_cli.audit, ["consume", "--idle-timeout", "6", "--group", settings.group(f"supervision-cc-{unique}")],
                             obj=settings)
    assert res.exit_code == 0, res.output
    assert conn.execute("SELECT passed, source LIKE 'topic:%%' FROM audits WHERE audit_id = %s",
                        (f"cc-{unique}",)).fetchone() == (True, True)
