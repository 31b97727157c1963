"""Assessment on a hand-checked emergency: fulfilment, response, reliability, audits, ranking, chart."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from vreserve import assessment as a
from supervision import cli as sup_cli
from supervision import sql_audits
from vreserve.sql_assessment import load_site_facts
from sv_helpers import add_contract, add_emergency, add_order, add_site, add_status, add_stock, utc
from vreserve.schemas.audits import AuditRecord

T0 = utc(2026, 11, 20, 8)
INTERVAL = 600.0  # one reading expected every 10 minutes -> 6 in the one-hour emergency


def _readings(conn, site_id, material_id, minutes_late: dict[int, float]) -> None:
    """Readings at T0 + k minutes, each received ``late`` minutes after its timestamp."""
    for k, late in minutes_late.items():
        ts = T0 + timedelta(minutes=k)
        conn.execute("INSERT INTO stock_readings (site_id, material_id, ts, seq, qty, unit, received_at)"
                     " VALUES (%s,%s,%s,%s,100,'box',%s)", (site_id, material_id, ts, k + 100, ts + timedelta(minutes=late)))


def _scenario(conn, w):
    g, e, h = f"G-{w.u}", f"E-{w.u}", f"H-{w.u}"
    add_site(conn, w, g, f"og-{w.u}", "government")
    add_site(conn, w, e, f"oe-{w.u}", "enterprise")
    add_site(conn, w, h, f"oh-{w.u}", "household")
    for s in (g, e, h):
        for m in (w.masks, w.water):
            add_contract(conn, f"C-{s}-{m}", s, m, 1000, date(2026, 1, 1), date(2026, 12, 31), response_min=120)
    em = f"EM-{w.u}"
    add_emergency(conn, w, em, T0, T0 + timedelta(hours=1), periods=1, period_length_s=3600)
    add_order(conn, em, f"g1-{w.u}", g, w.masks, 100, "box", T0 + timedelta(minutes=5))
    add_status(conn, f"sg1-{w.u}", f"g1-{w.u}", "delivered", T0 + timedelta(minutes=35), 100)     # 30 min
    add_order(conn, em, f"g2-{w.u}", g, w.water, 50, "l", T0 + timedelta(minutes=10))
    add_status(conn, f"sg2-{w.u}", f"g2-{w.u}", "delivered", T0 + timedelta(minutes=70), 50)      # 60 min
    add_order(conn, em, f"e1-{w.u}", e, w.masks, 100, "box", T0 + timedelta(minutes=5))
    add_status(conn, f"se1-{w.u}", f"e1-{w.u}", "delivered", T0 + timedelta(minutes=205), 50)     # 200 min, late
    add_order(conn, em, f"e2-{w.u}", e, w.masks, 70, "box", T0 + timedelta(minutes=6), status="cancelled")
    add_order(conn, em, f"h1-{w.u}", h, w.masks, 10, "box", T0 + timedelta(minutes=5))
    add_status(conn, f"sh1-{w.u}", f"h1-{w.u}", "failed", T0 + timedelta(minutes=50))
    _readings(conn, g, w.masks, {-10: 0, 0: 0, 10: 0, 20: 0, 30: 0, 40: 0, 50: 1})   # 6 in the window, all on time
    _readings(conn, e, w.masks, {0: 0, 10: 0, 20: 15, 30: 0})                      # 3 on time of 6 expected
    add_stock(conn, e, w.masks, 100, "box", T0)
    for i, (counted, minute) in enumerate(((100, 10), (10, 20))):                  # one pass, one failure
        sql_audits.record_audit(conn, AuditRecord.from_payload({
            "v": 1, "audit_id": f"as-{i}-{w.u}", "site_id": e, "auditor": "i",
            "at": (T0 + timedelta(minutes=minute)).isoformat(),
            "counts": [{"material": w.masks, "counted_qty": counted}]}), "test")
    return em, g, e, h


def test_assessment_hand_checked(conn, world):
    em, g, e, h = _scenario(conn, world)
    facts, window = load_site_facts(conn, em, INTERVAL)
    assert window["seconds"] == 3600
    sites, kinds = a.assess(facts)
    by = {s.site_id: s for s in sites}
    assert [s.site_id for s in sites] == [g, e, h]
    assert (by[g].fulfilment, by[g].median_response_min, by[g].on_time_share, by[g].reliability) == (1.0, 45.0, 1.0, 1.0)
    assert by[g].score == pytest.approx(1.0)
    assert (by[e].orders, by[e].fulfilment, by[e].median_response_min, by[e].on_time_share) == (1, 0.5, 200.0, 0.0)
    assert (by[e].reliability, by[e].discrepancy_share) == (0.5, 0.5)
    assert by[e].score == pytest.approx(0.5 * 0.5 + 0.2 * 0 + 0.2 * 0.5 + 0.1 * 0.5)
    assert (by[h].fulfilment, by[h].on_time_share, by[h].reliability, by[h].score) == (0.0, None, 0.0, 0.0)
    k = {x.owner_kind: x for x in kinds}
    assert set(k) == {"government", "enterprise", "household"}
    assert k["enterprise"].fulfilment == 0.5 and k["government"].median_response_min == 45.0


def test_assess_cli_writes_a_png_chart(conn, world, settings, tmp_path):
    em, g, e, h = _scenario(conn, world)
    res = CliRunner().invoke(sup_cli.assess, ["--emergency", em, "--out", str(tmp_path)],
                             obj=settings.with_(reading_interval_s=INTERVAL))
    assert res.exit_code == 0, res.output
    assert "median response (min)" in res.output and "50.0%" in res.output
    png = tmp_path / f"assessment-{em}.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert (tmp_path / f"assessment-{em}.csv").read_text().count("\n") == 4
    none = CliRunner().invoke(sup_cli.assess, ["--emergency", f"nope-{world.u}"], obj=settings)
    assert none.exit_code == 1 and "unknown emergency" in none.output
