"""The limited-fleet variant of the demo (demo/limits.py, ``--max-deliveries`` / ``--min-lot``)."""
from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

import demo.run
from demo.cli import demo as demo_command
from demo.limits import LIMITED_SCENARIO_FILE, write_limited_scenario
from optimizer import load_scenario


def _without_limits(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    d.pop("min_lot", None)
    for dc in d["distribution_centres"]:
        dc.pop("max_deliveries_per_period", None)
    return d


def test_limited_scenario_written_has_the_limits_and_still_loads(tmp_path):
    base = load_scenario("wuhan").to_dict()
    said: list[str] = []
    path = write_limited_scenario(base, 2, 20.0, tmp_path, said.append)
    assert path == tmp_path / LIMITED_SCENARIO_FILE
    written = json.loads(path.read_text())
    assert written["min_lot"] == 20.0
    assert [dc["max_deliveries_per_period"] for dc in written["distribution_centres"]] == [2] * len(
        base["distribution_centres"])
    sc = load_scenario(path)  # the optimizer's own validation, as the dispatcher loads it
    assert sc.min_lot == 20.0
    assert all(dc.max_deliveries_per_period == 2 for dc in sc.distribution_centres)
    assert _without_limits(sc.to_dict()) == _without_limits(base)  # only the limits changed
    assert base.get("min_lot") != 20.0  # the caller's dict is left alone
    assert len(said) == 1 and "at most 2 rescue centres per period" in said[0]
    assert "below 20 units" in said[0] and str(path) in said[0]


def test_a_limit_not_given_keeps_the_packs_own(tmp_path):
    base = load_scenario("wuhan").to_dict()
    pack_limits = [dc.get("max_deliveries_per_period") for dc in base["distribution_centres"]]
    path = write_limited_scenario(base, None, 12.5, tmp_path, lambda _m: None)
    sc = load_scenario(path)
    assert sc.min_lot == 12.5
    assert [dc.max_deliveries_per_period for dc in sc.distribution_centres] == pack_limits
    sc = load_scenario(write_limited_scenario(base, 3, None, tmp_path, lambda _m: None))
    assert sc.min_lot == base.get("min_lot")
    assert all(dc.max_deliveries_per_period == 3 for dc in sc.distribution_centres)


def test_without_limits_nothing_is_written_and_the_pack_is_declared(tmp_path):
    base = load_scenario("wuhan").to_dict()
    said: list[str] = []
    assert write_limited_scenario(base, None, None, tmp_path, said.append) is None
    assert not (tmp_path / LIMITED_SCENARIO_FILE).exists() and said == []


class _RecordingStack:
    """Stands in for demo.stack.Stack's ``run`` only: records the command's arguments."""

    def __init__(self) -> None:
        self.args: tuple[str, ...] = ()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        self.args = args
        return subprocess.CompletedProcess(args, 0, "declare event e1 published\nemergency em-1\n", "")


def test_declare_names_the_limited_file_instead_of_the_pack(tmp_path):
    opts = demo.run.DemoOptions(300, "wuhan", "wuhan", 3, "15s", 1.0, 2.0, 0.02, 7, True, str(tmp_path), True,
                                "vreserve_demo", 2, 20.0)
    stack = _RecordingStack()
    assert demo.run.declare(stack, opts, tmp_path / LIMITED_SCENARIO_FILE) == "em-1"
    args = list(stack.args)
    assert "--scenario" not in args and args[args.index("--demand") + 1] == str(tmp_path / LIMITED_SCENARIO_FILE)
    demo.run.declare(stack, opts, None)
    args = list(stack.args)
    assert "--demand" not in args and args[args.index("--scenario") + 1] == "wuhan"


@pytest.mark.parametrize("bad", [["--max-deliveries", "0"], ["--max-deliveries", "-2"], ["--max-deliveries", "1.5"],
                                 ["--min-lot", "0"], ["--min-lot", "-3"], ["--min-lot", "lots"]])
def test_limits_out_of_range_are_refused_before_anything_runs(bad, monkeypatch, tmp_path):
    started: list = []
    monkeypatch.setattr(demo.run, "run_demo", lambda settings, opts: started.append(opts))
    res = CliRunner().invoke(demo_command, [*bad, "--out", str(tmp_path)], obj=None)
    assert res.exit_code == 2, res.output
    assert bad[0] in res.output and started == []


def test_limits_in_range_reach_the_demo(monkeypatch, tmp_path):
    started: list = []
    monkeypatch.setattr(demo.run, "run_demo", lambda settings, opts: started.append(opts))
    res = CliRunner().invoke(demo_command, ["--max-deliveries", "1", "--min-lot", "0.5", "--out", str(tmp_path)],
                             obj=None)
    assert res.exit_code == 0, res.output
    assert [(o.max_deliveries, o.min_lot) for o in started] == [(1, 0.5)]
    res = CliRunner().invoke(demo_command, ["--out", str(tmp_path)], obj=None)
    assert res.exit_code == 0 and (started[-1].max_deliveries, started[-1].min_lot) == (None, None)
