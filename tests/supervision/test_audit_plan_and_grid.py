"""Risk-weighted audit plan (weights, reproducibility, proportional draw, floor) and the grid view."""
from __future__ import annotations

from datetime import date

from click.testing import CliRunner

from vreserve import audit_plan as ap
from supervision import cli as sup_cli
from supervision import sql_audits
from sv_helpers import add_contract, add_site, add_stock
from vreserve.schemas.audits import AuditRecord


def _risks(n_quiet: int = 9) -> list[ap.SiteRisk]:
    quiet = [ap.SiteRisk(f"q{i}", "c", 0.0, 0, 0, False) for i in range(n_quiet)]
    return quiet + [ap.SiteRisk("risky", "c", 500.0, 3, 1, False), ap.SiteRisk("big", "c", 1000.0, 0, 0, False)]


def test_weights_hand_checked():
    w = {x.risk.site_id: x for x in ap.weigh(_risks())}
    assert w["q0"].weight == 0.05                       # the floor only
    assert w["big"].weight == 1.05                      # floor + the largest contracted stock
    assert w["risky"].weight == 0.05 + 0.5 + 1.0 + 1.0  # floor + half size + 3 alerts + 1 discrepancy
    assert any("past discrepancy" in r for r in w["risky"].reasons)


def test_draw_is_seeded_without_replacement_and_proportional():
    weighted = ap.weigh(_risks())
    first = [x.risk.site_id for x in ap.draw(weighted, 5, seed=7)]
    assert first == [x.risk.site_id for x in ap.draw(weighted, 5, seed=7)]
    assert len(set(first)) == 5
    assert len(ap.draw(weighted, 50, seed=1)) == len(weighted)
    total = sum(x.weight for x in weighted)
    counts: dict[str, int] = {}
    trials = 4000
    for seed in range(trials):
        top = ap.draw(weighted, 1, seed)[0].risk.site_id
        counts[top] = counts.get(top, 0) + 1
    p_risky = 2.55 / total
    assert abs(counts["risky"] / trials - p_risky) < 0.03
    assert sum(counts.get(f"q{i}", 0) for i in range(9)) > 0  # every site keeps a chance


def test_plan_cli_and_grid_view(conn, world, settings):
    u = world.u
    sites = [f"G{i}-{u}" for i in range(4)]
    for i, s in enumerate(sites):
        add_site(conn, world, s, f"o{i}")
        add_contract(conn, f"C-{s}", s, world.masks, 100 * (i + 1), date(2020, 1, 1), date(2099, 12, 31), call_off=10)
        add_stock(conn, s, world.masks, 100 * (i + 1), "box")
    # a past discrepancy at G0 makes it the riskiest site of the cell
    sql_audits.record_audit(conn, AuditRecord.from_payload({
        "v": 1, "audit_id": f"gp-{u}", "site_id": sites[0], "auditor": "i", "at": "2026-11-22T08:00:00Z",
        "counts": [{"material": world.masks, "counted_qty": 20}]}), "test")
    runner = CliRunner()
    args = ["plan", "--count", "2", "--seed", "11", "--cell", world.cell]
    res = runner.invoke(sup_cli.audit, args, obj=settings)
    assert res.exit_code == 0, res.output
    assert res.output == runner.invoke(sup_cli.audit, args, obj=settings).output
    assert "seed 11" in res.output and "2 of 4 site(s)" in res.output and "weight" in res.output
    w0 = {x.risk.site_id: x for x in ap.weigh([r for r in sql_audits.site_risks(conn) if r.grid_cell == world.cell])}
    assert w0[sites[0]].weight == 0.05 + 0.25 + 1.0 + 0.5   # floor, 100/400 size, 1 discrepancy, suspended
    assert w0[sites[3]].weight == 1.05

    res = runner.invoke(sup_cli.grid, ["--cell", world.cell], obj=settings)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    cell_line = next(l for l in lines if l.startswith(world.cell) and "audit_discrepancy" in l)
    assert cell_line.split()[1:3] == ["4", "1"]                       # 4 sites, 1 suspended
    mat_line = next(l for l in lines if l.startswith(world.cell) and world.masks in l)
    assert mat_line.split()[2:8] == ["1000", "1000", "1", "20", "100", "box"]  # contracted, reported, audited
    assert sites[0] in res.output and "suspended" in res.output
    missing = runner.invoke(sup_cli.grid, ["--cell", f"nowhere-{u}"], obj=settings)
    assert missing.exit_code == 1 and "no sites in grid cell" in missing.output
