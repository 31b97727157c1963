"""Normal-time reserve balance: targets from a scenario, coverage, and the LP's suggestion
(cheapest owner's uncommitted stock first, never beyond what it holds, procurement for the rest)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vreserve import reserve_balance as bal
from supervision import cli as sup_cli
from sv_helpers import add_contract, add_site, add_stock, utc

BASE = {"periods": 2, "materials": [{"id": "m", "price": 1.0}],
        "rescue_centres": [{"id": "r1", "demand": {"m": [10, 30]}}]}


def test_targets_coverage_and_the_cheapest_rebalancing():
    stocks = [
        bal.SiteStock("a1", "o1", "A", "m", reported=50, committed=20, trust=1.0, fee_minor_per_unit_day=0.5),
        bal.SiteStock("a2", "o2", "A", "m", reported=40, committed=0, trust=1.0, fee_minor_per_unit_day=0.1),
        bal.SiteStock("b1", "o3", "B", "m", reported=5, committed=5, trust=1.0, fee_minor_per_unit_day=0.1),
    ]
    assert bal.daily_demand(BASE) == {"m": 20.0}
    rows = {r.grid_cell: r for r in bal.balance(stocks, {"m": "box"}, {"A": 1, "B": 1}, BASE, days=3)}
    a, b = rows["A"], rows["B"]
    assert (a.target, a.covered, a.coverage_days, a.under_target) == (30, 20, 2.0, True)
    # 10 more units in A: a2's uncommitted stock at 0.1 (not a1's at 0.5); nothing to buy
    assert [(x["site_id"], x["qty"]) for x in a.raises] == [("a2", 10.0)] and a.procure == pytest.approx(0, abs=1e-6)
    assert a.raises[0]["fee_minor_per_day"] == pytest.approx(1.0)
    # B: nobody holds more than committed: 25 units to procure
    assert b.raises == [] and b.procure == pytest.approx(25.0, abs=1e-4)
    # trust counts: a distrusted owner's stock covers less and offers less headroom
    half = bal.SiteStock("x", "o", "A", "m", reported=50, committed=20, trust=0.5, fee_minor_per_unit_day=0)
    assert (half.covered, half.headroom) == (10.0, 5.0)


def test_reserve_balance_command_table_and_map_json(conn, world, settings, tmp_path):
    """On the database: the `wuhan` pack's demand over this test's region (its materials have no stock
    here, so everything is to procure), a table and map-ready JSON with each cell's position."""
    from datetime import date

    s1 = f"B1-{world.u}"
    add_site(conn, world, s1, "O1")
    conn.execute("INSERT INTO materials VALUES ('medicine', 'Medicine', 'box', 'medical', true) ON CONFLICT DO NOTHING")
    add_contract(conn, f"C-{s1}", s1, "medicine", 100, date(2020, 1, 1), date(2099, 12, 31), standby=1)
    add_stock(conn, s1, "medicine", 150, "box", utc(2026, 11, 30, 8))
    out = tmp_path / "balance.json"
    res = CliRunner().invoke(sup_cli.reserve, ["balance", "--region", world.region, "--days", "2", "--json", str(out),
                                               "--all-cells"], obj=settings)
    assert res.exit_code == 0, res.output
    assert "under target" in res.output and "medicine" in res.output and "box" in res.output
    doc = json.loads(out.read_text())
    cell = doc["cells"][0]
    assert doc["money"] == "minor currency units" and cell["grid_cell"] == world.cell and cell["lat"] == 30.5
    med = next(m for m in cell["materials"] if m["material"] == "medicine")
    assert med["covered"] == 100 and med["unit"] == "box"
    # the whole region's demand falls on this one cell: under target; the site's 50 uncommitted boxes
    # (at 1 minor unit a day) are raised before anything is bought, the rest is procured
    assert med["under_target"] and med["target"] > 150
    assert [(x["site_id"], x["qty"]) for x in med["raises"]] == [(s1, pytest.approx(50, abs=1e-3))]
    assert med["procure"] == pytest.approx(med["target"] - 150, abs=1e-2)
    missing = CliRunner().invoke(sup_cli.reserve, ["balance", "--region", f"nowhere-{world.u}"], obj=settings)
    assert missing.exit_code == 1 and "no site in region" in missing.output
