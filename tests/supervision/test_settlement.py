"""Settlement arithmetic on the worked example of docs/supervision.md, idempotence, late status.

The expected figures were computed by hand (see the docs' table); they are not read back from code.
"""
from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal

from click.testing import CliRunner

from supervision import cli as sup_cli
from supervision import settle_run
from vreserve.money import minor
from vreserve.supply import StatusEvent, SupplyOrder, order_outcome
from vreserve.sql_settlement import settle

from sv_helpers import add_contract, add_emergency, add_order, add_site, add_status, utc


def _worked_example(conn, w):
    """docs/supervision.md, 'Worked example'. Returns (emergency id, site ids, order ids)."""
    s1, s2 = f"S1-{w.u}", f"S2-{w.u}"
    em = f"E-{w.u}"
    add_site(conn, w, s1, f"O1-{w.u}", "enterprise")
    add_site(conn, w, s2, f"O2-{w.u}", "household")
    add_contract(conn, f"C1-{w.u}", s1, w.masks, 1000, date(2026, 11, 1), date(2026, 12, 31), standby=0.5,
                 call_off=200, response_min=120, penalty=400, grace=0.05, late_penalty=20)
    add_contract(conn, f"C2-{w.u}", s2, w.masks, 20, date(2026, 11, 21), date(2026, 12, 31), standby=0.3125,
                 call_off=150, response_min=360, penalty=300)
    add_emergency(conn, w, em, utc(2026, 11, 20, 8), utc(2026, 11, 22, 20))
    o = {k: f"{k}-{w.u}" for k in ("O-1", "O-2", "O-3", "O-4", "O-5", "O-6", "O-7")}
    add_order(conn, em, o["O-1"], s1, w.masks, 300, "box", utc(2026, 11, 20, 9))
    add_status(conn, f"st1a-{w.u}", o["O-1"], "in_transit", utc(2026, 11, 20, 10))            # picked after 60 min
    add_status(conn, f"st1-{w.u}", o["O-1"], "delivered", utc(2026, 11, 20, 12, 30), 300)
    add_order(conn, em, o["O-2"], s1, w.masks, 200, "box", utc(2026, 11, 20, 12))
    add_status(conn, f"st2a-{w.u}", o["O-2"], "in_transit", utc(2026, 11, 20, 14, 30))        # picked after 150 min
    add_status(conn, f"st2-{w.u}", o["O-2"], "delivered", utc(2026, 11, 20, 15), 150)
    add_order(conn, em, o["O-3"], s1, w.masks, 100, "box", utc(2026, 11, 21, 9))
    add_status(conn, f"st3a-{w.u}", o["O-3"], "accepted", utc(2026, 11, 21, 10))
    add_status(conn, f"st3-{w.u}", o["O-3"], "failed", utc(2026, 11, 21, 11))                 # the site's failure
    add_order(conn, em, o["O-7"], s1, w.masks, 40, "box", utc(2026, 11, 21, 12))
    add_status(conn, f"st7-{w.u}", o["O-7"], "failed", utc(2026, 11, 21, 12, 5))              # no vehicle: carrier's
    add_order(conn, em, o["O-4"], s1, w.masks, 50, "box", utc(2026, 11, 21, 10), status="cancelled")
    add_order(conn, em, o["O-5"], s1, w.masks, 80, "box", utc(2026, 11, 22, 9))
    add_status(conn, f"st5a-{w.u}", o["O-5"], "in_transit", utc(2026, 11, 22, 10))            # picked after 60 min
    add_order(conn, em, o["O-6"], s2, w.masks, 7, "box", utc(2026, 11, 21, 14))
    add_status(conn, f"st6-{w.u}", o["O-6"], "delivered", utc(2026, 11, 21, 16), 7)
    return em, (s1, s2), o


def _by_kind(lines, site):
    return {l.kind: l for l in lines if l.site_id == site}


def test_rounding_is_half_away_from_zero():
    assert minor(Decimal("12.5")) == 13
    assert minor(Decimal("-12.5")) == -13
    assert minor(Decimal("12.49")) == 12


def test_outcome_ignores_cancel_after_failure_and_sums_partial_deliveries():
    t0 = utc(2026, 11, 20, 9)
    order = SupplyOrder("o", "s", "m", "box", Decimal(100), t0, (
        StatusEvent("a", "delivered", utc(2026, 11, 20, 10), Decimal(30), t0),
        StatusEvent("b", "delivered", utc(2026, 11, 20, 11), Decimal(50), t0),
    ), current_status="closed")
    out = order_outcome(order)
    assert out.delivered_qty == 80 and out.final and out.shortfall == 20
    assert out.response_minutes == 60.0
    site_failed_then_closed = SupplyOrder("o2", "s", "m", "box", Decimal(10), t0, (
        StatusEvent("c0", "accepted", utc(2026, 11, 20, 9, 30), None, t0),
        StatusEvent("c", "failed", utc(2026, 11, 20, 10), None, t0)), "closed")
    assert order_outcome(site_failed_then_closed).shortfall == 10
    assert order_outcome(site_failed_then_closed).failure_by == "site"
    no_vehicle = SupplyOrder("o4", "s", "m", "box", Decimal(10), t0,
                             (StatusEvent("d", "failed", utc(2026, 11, 20, 10), None, t0),))
    assert order_outcome(no_vehicle).failure_by == "carrier" and order_outcome(no_vehicle).shortfall == 0
    lost_on_road = SupplyOrder("o5", "s", "m", "box", Decimal(10), t0, (
        StatusEvent("e0", "accepted", utc(2026, 11, 20, 9, 30), None, t0),
        StatusEvent("e1", "in_transit", utc(2026, 11, 20, 9, 40), None, t0),
        StatusEvent("e2", "failed", utc(2026, 11, 20, 10), None, t0)))
    assert order_outcome(lost_on_road).shortfall == 0
    closed_untouched = SupplyOrder("o3", "s", "m", "box", Decimal(10), t0, (), "closed")
    assert order_outcome(closed_untouched).shortfall == 0


def test_worked_example_statement_idempotence_and_late_status(conn, world, tmp_path):
    em, (s1, s2), o = _worked_example(conn, world)
    first = settle(conn, em, "test:settler")
    assert first.issued is not None and first.issued.statement_id == f"ST-{em}-v1"
    assert (first.issued.period_from, first.issued.period_to) == (date(2026, 11, 20), date(2026, 11, 22))
    lines = first.issued.lines
    k1 = _by_kind(lines, s1)
    assert (k1["call_off"].qty, k1["call_off"].amount_minor) == (450, 90000)
    assert set(k1["call_off"].order_ids) == {o["O-1"], o["O-2"]}
    assert (k1["standby_fee"].qty, k1["standby_fee"].amount_minor) == (3000, 1500)      # 1000 x 3 days x 0.5
    assert (k1["shortfall_penalty"].qty, k1["shortfall_penalty"].amount_minor) == (135, -54000)  # (40 + 95) x 400
    assert set(k1["shortfall_penalty"].order_ids) == {o["O-2"], o["O-3"]}
    assert (k1["late_penalty"].qty, k1["late_penalty"].amount_minor) == (150, -3000)    # O-2 picked after 150 > 120 min
    assert k1["late_penalty"].order_ids == (o["O-2"],)   # O-1 took 210 min to arrive, but was picked after 60
    k2 = _by_kind(lines, s2)
    assert (k2["call_off"].qty, k2["call_off"].amount_minor) == (7, 1050)
    assert (k2["standby_fee"].qty, k2["standby_fee"].amount_minor) == (40, 13)          # 20 x 2 days x 0.3125 = 12.5
    assert set(k2) == {"call_off", "standby_fee"}
    assert first.issued.total_minor == 34500 + 1063
    assert any(o["O-5"] in w for w in first.computation.warnings)  # pending order is said, not settled

    again = settle(conn, em, "test:settler")
    assert again.issued is None and len(again.versions) == 1
    assert again.versions[0].lines == first.versions[0].lines

    # The late status: O-5 delivered at 11:00, recorded after v1 was issued.
    add_status(conn, f"st5b-{world.u}", o["O-5"], "delivered", utc(2026, 11, 22, 11), 80)
    adj = settle(conn, em, "test:settler")
    assert adj.issued is not None and adj.issued.kind == "adjustment"
    assert adj.issued.statement_id == f"ST-{em}-v2"
    assert adj.issued.late_status_ids == (f"st5b-{world.u}",)
    assert [(l.site_id, l.kind, l.qty, l.amount_minor) for l in adj.issued.lines] == [(s1, "call_off", 80, 16000)]
    assert adj.issued.lines[0].note.startswith("ADJUSTMENT")
    assert adj.issued.total_minor == 16000
    assert adj.versions[0].lines == first.versions[0].lines  # v1 never changes

    assert settle(conn, em, "test:settler").issued is None  # and settling again is still a no-op

    # Files: every line of every version, the adjustment marked, totals per owner.
    paths = settle_run.write_files(adj, tmp_path, "CNY")
    rows = list(csv.DictReader(paths[0].open()))
    assert [r["kind"] for r in rows].count("ADJUSTMENT") == 1
    assert sum(int(r["amount_minor"]) for r in rows) == 34500 + 1063 + 16000
    doc = json.loads(paths[1].read_text())
    o1 = [r for r in doc["deliveries_per_owner"] if r["owner_id"] == f"O1-{world.u}"]
    assert [(r["ordered_qty"], r["delivered_qty"], r["unit"]) for r in o1] == [("720", "530", "box")]  # O-4 withdrawn
    owners = {r["owner_id"]: r["total_minor"] for r in doc["per_owner"]}
    assert owners == {f"O1-{world.u}": 34500 + 16000, f"O2-{world.u}": 1063}


def test_settle_cli_prints_table_and_refuses_unknown_emergency(conn, world, settings, tmp_path):
    em, _, _ = _worked_example(conn, world)
    runner = CliRunner()
    res = runner.invoke(sup_cli.settle, ["--emergency", em, "--out", str(tmp_path)], obj=settings)
    assert res.exit_code == 0, res.output
    assert "minor" in res.output and f"ST-{em}-v1" in res.output and "35563" in res.output
    res2 = runner.invoke(sup_cli.settle, ["--emergency", em, "--out", str(tmp_path), "--format", "json"], obj=settings)
    assert res2.exit_code == 0 and "unchanged" in res2.output
    out = res2.output  # stdout and stderr (progress lines) together in click 8.1's runner
    doc = json.loads(out[out.index("{\n"):out.rindex("}") + 1])
    assert doc["total_minor"] == 35563
    bad = runner.invoke(sup_cli.settle, ["--emergency", f"nope-{world.u}"], obj=settings)
    assert bad.exit_code != 0 and "unknown emergency" in bad.output
    other = runner.invoke(sup_cli.settle, ["--emergency", em, "--from", "2026-11-01", "--out", str(tmp_path)], obj=settings)
    assert other.exit_code != 0 and "same period" in other.output


def test_orders_from_unregistered_origins_are_left_out_loudly(conn, world):
    em, (s1, _), _ = _worked_example(conn, world)
    add_order(conn, em, f"X-{world.u}", f"cell:nowhere-{world.u}", world.masks, 5, "box", utc(2026, 11, 20, 9))
    res = settle(conn, em, "test:settler")
    assert res.issued.total_minor == 34500 + 1063
    assert any(f"X-{world.u} (cell:nowhere-{world.u})" in w for w in res.computation.warnings)
