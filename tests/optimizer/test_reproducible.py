"""Reproducibility (issue 19): an anytime plan is a pure function of its inputs and its work limits;
the wall clock is only a safety net, and a plan it cut short says so."""
import dataclasses

import pytest

from optimizer import load_scenario
from optimizer.anytime import plan_anytime
from optimizer.check import check_plan
from optimizer.decompose import plan_by_material
from optimizer.generate import generate
from optimizer.work import PROVINCE_COLUMNS, WorkLimits, work_for_budget


def fingerprint(res) -> tuple:
    """Everything a dispatcher would publish or state about a plan, without the timings."""
    return (res.status, res.objective, res.bound, res.gap,
            sorted(dataclasses.astuple(f) for f in res.deliveries),
            sorted(dataclasses.astuple(f) for f in res.shipments_in),
            [(e["stage"], e.get("objective"), e.get("check")) for e in res.summary.get("trajectory", [])])


def limited_paper(seed: int) -> dict:
    return generate("paper", seed, max_deliveries=2, min_lot=20)


def test_same_work_limits_give_the_same_plan_whatever_the_time_budget():
    # seed 3: the fix-and-optimize MILP is not done after 3 nodes, so its node limit decides where it stops
    sc = load_scenario(limited_paper(3))
    work = WorkLimits(rounds=1, mip_nodes=3)
    short, long = (plan_anytime(sc, budget_s=b, gap=1e-4, work=work) for b in (40.0, 90.0))
    assert not short.summary["stopped_by_clock"] and not long.summary["stopped_by_clock"]
    assert short.summary["clock_stops"] == [] and short.summary["work_limits"] == work.to_json_dict()
    assert fingerprint(short) == fingerprint(long)
    last = short.summary["trajectory"][-1]
    assert last["stage"].startswith("fix-and-optimize") and last["solver_status"] == "work_limit"  # nodes decided
    assert check_plan(sc, short).ok


def test_the_same_budget_plans_the_same_scenario_identically_twice():
    for sc in (load_scenario(generate("paper", 2)), load_scenario(limited_paper(3))):
        first, second = (plan_anytime(sc, budget_s=5.0, gap=1e-3) for _ in range(2))
        assert first.summary["work_limits"] == work_for_budget(5.0, 1, 1).to_json_dict()
        assert not first.summary["stopped_by_clock"]
        assert fingerprint(first) == fingerprint(second)


def test_a_plan_the_clock_cut_short_says_so():
    sc = load_scenario(limited_paper(2))
    res = plan_anytime(sc, budget_s=0.001, gap=1e-4, work=WorkLimits(rounds=2, mip_nodes=100))
    assert res.has_plan and check_plan(sc, res).ok  # the greedy plan stands
    assert res.summary["stopped_by_clock"] is True
    assert "fix-and-optimize" in res.summary["clock_stops"]
    assert any("not started, the time budget is spent" in e["stage"] for e in res.summary["trajectory"])
    # with no improvement rounds asked for, the same budget is not a clock stop: the work limits decided
    res0 = plan_anytime(sc, budget_s=0.001, gap=1e-4, work=WorkLimits(rounds=0))
    assert res0.summary["stopped_by_clock"] is False and res0.objective == res.objective


def test_the_decomposition_stops_by_its_material_limit_not_by_the_clock():
    sc = load_scenario(generate("paper", 1))
    a, b = (plan_by_material(sc, time_limit_s=t, gap=1e-3, max_materials=2, greedy_fallback=True)
            for t in (60.0, 120.0))
    assert a.summary["materials_solved"] == 2 and len(a.summary["materials_greedy"]) == len(sc.materials) - 2
    assert a.summary["stopped_by_clock"] is False and "work limit" in a.message
    assert fingerprint(a) == fingerprint(b)
    assert check_plan(sc, a).ok
    clock = plan_by_material(sc, time_limit_s=0.0, gap=1e-3, greedy_fallback=True)
    assert clock.summary["stopped_by_clock"] is True and "time limit" in clock.message


def test_work_for_budget_is_a_pure_function_of_budget_and_size():
    assert work_for_budget(30.0, 1000, 4) == work_for_budget(30.0, 1000, 4)
    assert work_for_budget(0.0, 1000, 4).rounds == 0
    assert work_for_budget(10.0, 41_000, 10).rounds == 1 and work_for_budget(30.0, 41_000, 10).rounds == 2
    assert work_for_budget(60.0, 41_000, 10).rounds == 3 and work_for_budget(90.0, 41_000, 10).rounds == 4
    assert work_for_budget(5.0, 1000, 4).rounds == 4  # the packs: the full MILP is cheap
    assert work_for_budget(60.0, 1000, 4).mip_nodes > work_for_budget(5.0, 1000, 4).mip_nodes
    province = work_for_budget(60.0, PROVINCE_COLUMNS + 1, 20)
    assert 0 < province.materials <= 20 and work_for_budget(600.0, PROVINCE_COLUMNS + 1, 20).materials == 20
    limited = work_for_budget(60.0, PROVINCE_COLUMNS + 1, 20, limited=True)
    assert limited.rounds == 3 and limited.materials == 20  # every material on fixed arcs, the bound, the centres
    part = work_for_budget(30.0, PROVINCE_COLUMNS + 1, 20, limited=True)
    assert part.rounds == 1 and 0 < part.materials < 20  # the decomposition on fixed arcs, part of it
    assert work_for_budget(7.5, PROVINCE_COLUMNS + 1, 20, limited=True).rounds == 0  # the dispatcher: greedy only
    assert work_for_budget(600.0, PROVINCE_COLUMNS + 1, 20, limited=True) == WorkLimits(4, limited.mip_nodes, 20)
    with pytest.raises(ValueError, match="work limits out of range"):
        WorkLimits(mip_nodes=0)


def test_two_lanes_of_materials_plan_the_same_whatever_the_threads_timing():
    """Lanes deal the materials by their order, never by which thread finishes first: three runs with
    two lanes (and two budgets) give one plan; it is a feasible plan of its own, not one lane's."""
    sc = load_scenario(generate("paper", 1))  # seed 1: every material proven at once (seed 3 runs to the limit)
    runs = [plan_by_material(sc, time_limit_s=t, gap=1e-3, max_materials=2, greedy_fallback=True, lanes=2)
            for t in (60.0, 60.0, 120.0)]
    assert fingerprint(runs[0]) == fingerprint(runs[1]) == fingerprint(runs[2])
    assert runs[0].summary["materials_solved"] == 2 and len(runs[0].summary["materials_greedy"]) == len(sc.materials) - 2
    assert not runs[0].summary["stopped_by_clock"] and check_plan(sc, runs[0]).ok
    one_lane = plan_by_material(sc, time_limit_s=60.0, gap=1e-3, max_materials=2, greedy_fallback=True)
    assert runs[0].summary["materials_solved"] == one_lane.summary["materials_solved"]
    assert abs(runs[0].objective - one_lane.objective) <= 1e-3 * one_lane.objective  # each material to gap / 4


def test_with_limits_the_stock_fleet_bound_computed_beside_round_one_is_the_same_as_alone():
    """Round 2's bound runs in a thread beside round 1; it is the bound the LP gives on its own, and
    two runs are identical."""
    from optimizer.bounds import stock_fleet_relaxation

    sc = load_scenario(limited_paper(1))
    work = WorkLimits(rounds=2, mip_nodes=200)
    a, b = (plan_anytime(sc, budget_s=60.0, gap=1e-9, work=work) for _ in range(2))
    assert fingerprint(a) == fingerprint(b)
    assert a.summary["stock_fleet_bound"] == stock_fleet_relaxation(sc)[0]
    assert a.bound >= a.summary["stock_fleet_bound"] - 1e-9 and check_plan(sc, a).ok


def test_a_milp_stopped_at_its_objective_target_says_so_and_is_no_clock_stop():
    """The anytime rounds give HiGHS the plan value that would prove the asked gap against the bound
    known then (``objective_target``): a stop decided by the inputs, reported as ``target``."""
    from optimizer.model import Planner

    sc = load_scenario(limited_paper(3))
    res = Planner(sc).solve(sc, time_limit_s=60, gap=1e-9, method="milp", highs_options={"objective_target": 1e12})
    assert res.has_plan and res.summary["solver_status"] == "target" and check_plan(sc, res).ok


def test_the_proven_prefix_stop_plans_the_same_whatever_the_threads_timing():
    """The decomposition's stop at the shortest proven prefix depends on the per-material results only:
    runs with two lanes and different budgets give one plan (a lane that solved past the prefix is
    dropped)."""
    sc = load_scenario(generate("city", 1))  # proven after 7 of its 10 materials
    runs = [plan_by_material(sc, time_limit_s=t, gap=0.01, greedy_fallback=True, stop_when_proven=True, lanes=2)
            for t in (60.0, 60.0, 120.0)]
    assert fingerprint(runs[0]) == fingerprint(runs[1]) == fingerprint(runs[2])
    assert 0 < runs[0].summary["proven_after_materials"] < len(sc.materials)
    assert not runs[0].summary["stopped_by_clock"]
    assert check_plan(sc, runs[0]).ok


def test_the_seeded_deal_gives_the_first_lane_one_material_more_whatever_the_timing():
    """With the other lanes waiting for lane 0's first basis, lane 0 takes the first two materials and
    the rest go in turn: every material once, a function of the order and the lane count only."""
    from optimizer.decompose import _deal

    order = [7, 3, 9, 1, 5, 0, 2]
    assert _deal(order, 2, seeded=True) == [[7, 3, 1, 0], [9, 5, 2]]
    assert _deal(order, 2) == [[7, 9, 5, 2], [3, 1, 0]]
    assert _deal(order, 3, seeded=True) == [[7, 3, 5], [9, 0], [1, 2]]
    assert _deal([4], 2, seeded=True) == [[4]] and _deal([], 2, seeded=True) == [[]]


def test_the_province_path_hands_its_greedy_plans_over_as_the_first_plan_reproducibly(monkeypatch):
    """Province size without limits: the first plan is the decomposition's own greedy plans (each
    material's within its shares, made for the proven-prefix stop), checked, and the same in every run;
    the size threshold is lowered so that a city scenario takes that path."""
    import time

    import optimizer.anytime as anytime
    from optimizer.decompose import (_greedy_material, _greedy_plan_of, aggregate_relaxation, material_budgets,
                                     material_subproblems)

    monkeypatch.setattr(anytime, "PROVINCE_COLUMNS", 0)
    sc = load_scenario(generate("city", 1))
    runs = [plan_anytime(sc, budget_s=t, gap=0.01, work=WorkLimits(rounds=1, mip_nodes=400)) for t in (60.0, 120.0)]
    assert fingerprint(runs[0]) == fingerprint(runs[1])
    first = runs[0].summary["trajectory"][0]
    assert first["stage"] == "greedy buying ahead, material by material" and first["check"] == "passed"
    _, spend = aggregate_relaxation(sc)
    subs = [load_scenario(s) for s in material_subproblems(sc, material_budgets(sc, spend))]
    plans = {mi: tuple(_greedy_material(sub, m, lookahead=True)[:2])
             for mi, (sub, m) in enumerate(zip(subs, sc.material_ids))}
    alone = _greedy_plan_of(sc, plans, 0.0, 0.01, time.perf_counter())
    assert first["objective"] == pytest.approx(alone.objective, rel=1e-12) and check_plan(sc, alone).ok
    assert runs[0].objective <= alone.objective and check_plan(sc, runs[0]).ok
    assert runs[0].summary["method"].startswith("anytime: decomposition by material")
