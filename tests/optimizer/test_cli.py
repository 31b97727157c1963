import json

from click.testing import CliRunner

from vreserve.cli import cli


def test_plan_writes_the_json_contract_and_prints_a_summary(tmp_path):
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(cli, ["plan", "wuhan", "--json", str(out), "--time-limit", "30"])
    assert res.exit_code == 0, res.output
    assert "objective (sum theta x shortage)" in res.output and "medicine" in res.output
    doc = json.loads(out.read_text())
    assert doc["status"] in ("optimal", "feasible")
    assert set(doc["urgency"]["coefficients"]) == {"medicine", "medical_alcohol", "ventilator", "pork"}


def test_budget_study_prints_per_material_rows_and_writes_pngs(tmp_path):
    res = CliRunner().invoke(cli, ["plan", "wuhan", "--budgets", "2e6,20e6", "--no-arc-stage",
                                   "--plots", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.count("ventilator") >= 2
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["wuhan_shortage_rate_ideal_vs_actual.png", "wuhan_shortage_vs_budget.png"]
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_bad_scenario_is_a_clear_error_and_generate_writes_a_loadable_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "periods": 1, "materials": []}))
    res = CliRunner().invoke(cli, ["plan", str(bad)])
    assert res.exit_code != 0 and "bad scenario" in res.output and "missing key" in res.output
    out = tmp_path / "paper.yaml"
    res = CliRunner().invoke(cli, ["scenario", "generate", "--size", "paper", "--seed", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["scenario", "validate", str(out)])
    assert res.exit_code == 0 and "ok - 4 materials, 10 periods" in res.output
