import numpy as np
import pytest

from optimizer import ScenarioError, SolveStatus, load_scenario, plan
from optimizer.decompose import aggregate_bound, plan_by_material
from optimizer.generate import generate
from optimizer.greedy import greedy_plan


@pytest.mark.parametrize("seed", [1, 2])
def test_aggregate_bound_is_below_the_optimum_and_decomposition_above_it(seed):
    sc = load_scenario(generate("paper", seed))
    best = plan(sc, prefer_fewer_arcs=False)
    assert best.status is SolveStatus.OPTIMAL
    bound = aggregate_bound(sc)
    assert 0 < bound <= best.objective * (1 + 1e-9)
    dec = plan_by_material(sc, time_limit_s=30, gap=0.05)
    assert dec.has_plan and dec.objective >= best.objective * (1 - 1e-3)
    assert dec.bound == pytest.approx(bound) and dec.gap == pytest.approx((dec.objective - bound) / dec.objective)
    # the merged plan respects the budget and every rescue centre's demand
    assert dec.summary["spent"] <= sc.budget + 1e-6
    assert all(s.qty >= 0 for s in dec.shortage)


def test_decomposition_refuses_coupled_delivery_rules():
    with pytest.raises(ScenarioError, match="min_lot"):
        plan_by_material("wuhan")


def test_greedy_is_feasible_and_never_beats_the_optimum():
    for src in ("wuhan", generate("paper", 2)):
        sc = load_scenario(src)
        g = greedy_plan(sc)
        best = plan(sc, prefer_fewer_arcs=False)
        assert g.feasible and g.objective >= best.objective * (1 - 1e-6)
        assert np.all(g.shortage >= 0)
        if sc.budget is not None:
            assert g.spent <= sc.budget + 1e-6


def test_on_hand_limits_the_bound_the_decomposition_and_the_greedy_baseline():
    """Every site of a generated scenario gets on hand half its supply over the horizon: the bound
    stays below the optimum, and no plan ships more from a site than it has."""
    data = generate("paper", 1)
    for w in data["supply_sites"]:
        w["on_hand"] = {m: float(sum(v) // 2) for m, v in w["supply"].items()}
    sc = load_scenario(data)
    best = plan(sc, prefer_fewer_arcs=False)
    assert best.status is SolveStatus.OPTIMAL
    loose = load_scenario(generate("paper", 1))
    assert aggregate_bound(loose) <= aggregate_bound(sc) <= best.objective * (1 + 1e-9)
    assert best.objective > plan(loose, prefer_fewer_arcs=False).objective  # the limit binds

    def shipped(flows):
        out = {}
        for f in flows:
            out[(f.origin, f.material)] = out.get((f.origin, f.material), 0.0) + f.qty
        return out

    on_hand = {(w.id, m): q for w in sc.supply_sites for m, q in w.on_hand.items()}
    dec = plan_by_material(sc, time_limit_s=30, gap=0.05)
    for flows in (best.shipments_in, dec.shipments_in):
        assert all(q <= on_hand[k] + 1e-6 for k, q in shipped(flows).items())
    g = greedy_plan(sc)
    assert g.feasible and g.objective >= best.objective * (1 - 1e-6)


def test_decomposition_stopped_early_keeps_the_solved_materials_as_a_checked_plan():
    from optimizer.check import check_plan
    from optimizer.decompose import material_order

    sc = load_scenario(generate("paper", 1))
    full = plan_by_material(sc, time_limit_s=30, gap=0.05)
    part = plan_by_material(sc, time_limit_s=30, gap=0.05, max_materials=2)
    assert part.status is SolveStatus.FEASIBLE and part.summary["materials_solved"] == 2
    assert "work limit reached after 2 of 4 materials" in part.message
    first_two = {sc.materials[i].id for i in material_order(sc)[:2]}
    assert {f.material for f in part.deliveries} <= first_two and set(part.summary["material_statuses"]) == first_two
    assert check_plan(sc, part).ok
    assert part.objective > full.objective and part.gap > full.gap
    assert plan_by_material(sc, time_limit_s=30, gap=0.05, max_materials=0).status is SolveStatus.NO_SOLUTION


def test_decomposition_stopped_early_falls_back_to_each_materials_greedy_plan_if_asked():
    from optimizer.check import check_plan
    from optimizer.decompose import material_order

    sc = load_scenario(generate("paper", 2))
    nothing = plan_by_material(sc, time_limit_s=30, gap=0.05, max_materials=1)
    greedy = plan_by_material(sc, time_limit_s=30, gap=0.05, max_materials=1, greedy_fallback=True)
    rest = [sc.materials[i].id for i in material_order(sc)[1:]]
    assert greedy.summary["materials_greedy"] == rest and "the others follow the greedy plan" in greedy.message
    assert {f.material for f in greedy.deliveries} > {f.material for f in nothing.deliveries}
    assert check_plan(sc, greedy).ok and greedy.objective < nothing.objective


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_greedy_buying_ahead_with_budget_shares_is_checked_and_nearer_the_bound(seed):
    """Buying for every later period (with each material's budget share) keeps every rule, never beats
    the optimum, and on the generated epidemics (demand grows, supply lapses) beats the myopic greedy."""
    from optimizer.anytime import greedy_result
    from optimizer.check import check_plan
    from optimizer.decompose import aggregate_relaxation, material_budgets

    sc = load_scenario(generate("paper", seed))
    bound, spend = aggregate_relaxation(sc)
    shares = material_budgets(sc, spend)
    ahead = greedy_plan(sc, lookahead=True, budgets=shares)
    myopic = greedy_plan(sc)
    best = plan(sc, time_limit_s=30, gap=1e-4)
    assert ahead.feasible and best.objective * (1 - 1e-6) <= ahead.objective < myopic.objective
    res = greedy_result(sc, bound, 0.01, budgets=shares)
    assert check_plan(sc, res).ok and res.objective == pytest.approx(ahead.objective)
    price = {(w.id, m): w.price[m] for w in sc.supply_sites for m in sc.material_ids}
    for i, m in enumerate(sc.material_ids):  # each material within its share of the budget
        spent = sum(f.qty * price[(f.origin, m)][f.period - 1] for f in res.shipments_in if f.material == m)
        assert spent <= shares[i] + 1e-6


def test_proven_prefix_is_the_shortest_and_waits_for_every_material_before_it():
    from optimizer.decompose import _ProvenPrefix

    p = _ProvenPrefix(bound=90.0, gap=0.1)  # proven once the total is at most 100
    order = [2, 0, 1]
    p.greedy = {0: 40.0, 1: 40.0, 2: 40.0}  # 120: the greedy plans alone are not proven
    p.update(order, {0: 30.0})  # material 2 (first in the order) not solved yet: no prefix
    assert p.length is None and not p.event.is_set()
    p.update(order, {0: 30.0, 2: 35.0})  # prefix [2]: 35 + 40 + 40 = 115; [2, 0]: 35 + 30 + 40 = 105
    assert p.length is None
    p.update(order, {0: 30.0, 2: 35.0, 1: 30.0})
    assert p.length == 3 and p.event.is_set()
    q = _ProvenPrefix(bound=90.0, gap=0.1)
    q.greedy = {0: 40.0, 1: 25.0, 2: 40.0}
    q.update(order, {0: 30.0, 2: 30.0, 1: 20.0})  # [2]: 30 + 40 + 25 = 95 already: the shortest wins
    assert q.length == 1


@pytest.mark.parametrize("gap", [0.01, 0.02])
def test_decomposition_stops_at_the_proven_prefix_and_one_material_fewer_is_not_proven(gap):
    # city seed 1 (10 materials): the greedy plans alone are not within these gaps (at paper size they are)
    from optimizer.check import check_plan
    from optimizer.decompose import ORDER_HEAD, material_order

    sc = load_scenario(generate("city", 1))
    res = plan_by_material(sc, time_limit_s=30, gap=gap, greedy_fallback=True, stop_when_proven=True, lanes=2)
    k = res.summary["proven_after_materials"]
    assert res.status is SolveStatus.OPTIMAL and res.gap <= gap and check_plan(sc, res).ok
    assert 0 < k < len(sc.materials) and f"after {k} materials" in res.message
    order = res.summary["material_order"]  # the first ORDER_HEAD most at stake, then by greedy loss
    assert order[:ORDER_HEAD] == [sc.materials[i].id for i in material_order(sc)][:ORDER_HEAD]
    assert sorted(order) == sorted(sc.material_ids)
    assert set(res.summary["material_statuses"]) == set(order[:k]) and res.summary["materials_greedy"] == order[k:]
    fewer = plan_by_material(sc, time_limit_s=30, gap=gap, greedy_fallback=True, stop_when_proven=True,
                             lanes=2, max_materials=k - 1)
    assert fewer.summary["proven_after_materials"] is None and fewer.gap > gap
    assert fewer.status is SolveStatus.FEASIBLE and check_plan(sc, fewer).ok


def test_materials_past_the_head_wait_for_their_order_and_follow_the_greedy_loss():
    """``_Schedule``: the first ``head`` materials (stake order) are there at once, a lane's material
    past the head waits for ``settle``; the order after the head is by the key, largest first, ties
    in the stake order."""
    import threading

    from optimizer.decompose import _Schedule

    sched = _Schedule([4, 2, 0, 1, 3], count=5, lanes=2, seeded=True, head=3)
    assert sched.positions == [[0, 1, 3], [2, 4]]
    assert [sched.material(0, 0), sched.material(0, 1), sched.material(1, 0)] == [4, 2, 0]
    got: list[int | None] = []
    lane = threading.Thread(target=lambda: got.append(sched.material(0, 2)))
    lane.start()
    lane.join(timeout=0.2)
    assert lane.is_alive() and not got  # waits for the order past the head
    sched.settle(np.array([9.0, 5.0, 0.0, 5.0, 1.0]))  # materials 1 and 3 tie: the stake order (1 first)
    lane.join(timeout=5)
    assert got == [1] and sched.order == [4, 2, 0, 1, 3] and sched.material(1, 1) == 3 and sched.material(1, 2) is None


def test_the_proven_prefix_order_after_the_head_is_by_greedy_loss_against_the_bounds():
    """The order is made from the inputs only: each material's greedy plan (buying ahead within its
    shares) less the larger of its maximum-flow bound and its part of the aggregate bound."""
    from optimizer.decompose import (ORDER_HEAD, _aggregate, _greedy_material, aggregate_relaxation,
                                     material_budgets, material_order, material_subproblems)
    from optimizer.flow_bound import material_network_bounds, max_deliverable

    sc = load_scenario(generate("city", 1))
    res = plan_by_material(sc, time_limit_s=30, gap=0.01, greedy_fallback=True, stop_when_proven=True, lanes=2)
    _, spend = aggregate_relaxation(sc)
    subs = [load_scenario(s) for s in material_subproblems(sc, material_budgets(sc, spend))]
    loss = [_greedy_material(sub, m, lookahead=True)[2] for sub, m in zip(subs, sc.material_ids)]
    parts = _aggregate(sc, max_deliverable(sc))[2]
    assert parts.sum() == pytest.approx(aggregate_relaxation(sc, max_deliverable(sc))[0], rel=1e-8)
    loss = [g - b for g, b in zip(loss, np.maximum(material_network_bounds(sc) / (1 - 1e-9), parts))]
    stake = material_order(sc)
    rest = sorted(stake[ORDER_HEAD:], key=lambda mi: -loss[mi])
    assert res.summary["material_order"] == [sc.material_ids[mi] for mi in stake[:ORDER_HEAD] + rest]


@pytest.mark.parametrize("scenario", [generate("city", 1), generate("city", 2), generate("paper", 3)])
def test_one_greedy_pass_with_the_shares_gives_each_materials_own_greedy_plan(scenario):
    """``_greedy_by_material``: the whole scenario's greedy pass with the budget shares and the capacity
    shares as per-material caps gives, material by material, the same flows and objective as the greedy
    plan of that material's own single-material scenario (what the proven-prefix stop counts on)."""
    from optimizer.decompose import _greedy_by_material, _greedy_material, material_budgets, material_subproblems
    from optimizer.decompose import aggregate_relaxation

    sc = load_scenario(scenario)
    subs = material_subproblems(sc, material_budgets(sc, aggregate_relaxation(sc)[1]))
    together = _greedy_by_material(sc, subs)
    assert together is not None
    for mi, (sub, m) in enumerate(zip(subs, sc.material_ids)):
        alone = _greedy_material(load_scenario(sub), m, lookahead=True)
        assert together[mi][2] == alone[2]
        for k in (0, 1):
            assert sorted(map(str, together[mi][k])) == sorted(map(str, alone[k]))
