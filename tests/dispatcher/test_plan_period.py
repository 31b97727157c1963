"""The dispatcher's compute step is pure: a plan from a hand-built live state, no database."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from dispatcher.book import Pipeline
from dispatcher.planning import LiveState, PeriodPlan, PlannerCache, plan_period, published_gap_note
from dispatcher.snapshot import SupplyAvailability, supply_nodes
from optimizer import load_scenario
from optimizer.anytime import plan_anytime
from optimizer.generate import generate
from optimizer.work import WorkLimits
from vreserve.emergencies import Emergency
from vreserve.schemas.dispatch import MaterialDetails, OrderEnd

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
BASE = {
    "name": "t", "periods": 2, "theta": "exp",
    "materials": [{"id": "medicine", "unit": "box", "price": 2.0, "urgency": 0.9}],
    "supply_sites": [],
    "distribution_centres": [{"id": "DC1", "capacity": 1000.0, "initial": {"medicine": 5.0},
                              "safety_stock": {"medicine": 0.0}}],
    "rescue_centres": [{"id": "RC1", "demand": {"medicine": [20, 20]}}],
    "budget": 10_000.0,
}


def _row(site: str, available: int, reason: str = "") -> SupplyAvailability:
    return SupplyAvailability(site_id=site, grid_cell="g1", tier="centralized", lat=30.0, lon=114.0,
                              material_id="medicine", unit="box", reported=float(available),
                              committed=float(available), contracted=100.0, trust=1.0, reserved=0.0,
                              available=0 if reason else available, left_out=available if reason else 0,
                              left_out_reason=reason)


def _state(rows: list[SupplyAvailability], period: int = 1, overrides=None) -> LiveState:
    em = Emergency("E1", "r1", (), NOW, 2, 60.0, "file", 1.0, None, None)
    return LiveState(emergency=em, period=period, now=NOW, base=BASE, unit_notes=["medicine: ml -> box"],
                     supersede=[("O-old", "r1")], rows=rows, nodes=supply_nodes(rows),
                     pipeline=Pipeline({}, {}, {}, 0.0), demand_overrides=overrides or {},
                     site_ends=[OrderEnd(id="S1", kind="site", name="Depot one", address="1 Road", lat=30.0, lon=114.0)],
                     material_details={"medicine": MaterialDetails(name="Medicine", weight_kg_per_unit=2.0)},
                     read_s=0.01)


def test_a_plan_from_plain_values_with_orders_and_figures_in_units():
    plan = plan_period(_state([_row("S1", 30), _row("S2", 12, "stale: last reading 900 s old")]), PlannerCache(10))
    assert isinstance(plan, PeriodPlan)
    s = plan.summary
    assert s.plan_id == "P-E1-001" and s.created_at == NOW and s.timings_s["snapshot"] == 0.01
    assert plan.orders and {o.plan_id for o in plan.orders} == {"P-E1-001"}
    assert all(o.unit == "box" and o.created_at == NOW for o in plan.orders)
    supply = [o for o in plan.orders if o.leg == "supply"]
    assert supply and all(o.details.origin_place.address == "1 Road" for o in supply)  # what a carrier needs
    assert all(o.details.total_weight_kg == o.qty * 2.0 for o in plan.orders)
    picks = sum(o.qty for o in plan.orders if o.leg == "supply")
    assert 0 < picks <= 30  # never more than the counted stock; the stale site gives nothing
    figures = s.materials["medicine"]
    assert figures["unit"] == "box" and figures["available"] == 30 and figures["left_out"] == 12
    assert plan.supersede == [("O-old", "r1")] and s.cancelled == 1
    assert "medicine: ml -> box" in plan.warnings and any("stock left out" in w for w in plan.warnings)


def test_inputs_nobody_can_use_are_said_and_unit_notes_only_in_the_first_period():
    plan = plan_period(_state([_row("S1", 3)], period=2, overrides={("RC9", "medicine", 2): 5.0}), PlannerCache(10))
    assert plan.summary.plan_id == "P-E1-002"
    assert not any("ml -> box" in w for w in plan.warnings)
    assert any("unknown rescue centre/material ignored: RC9/medicine" in w for w in plan.warnings)
    assert sum(o.qty for o in plan.orders if o.leg == "supply") <= 3


def test_a_plan_the_clock_cut_short_is_stated_as_such_and_a_work_limited_one_is_not():
    """Issue 19: the anytime planner's work limits decide a plan; when the period's time budget (the
    safety net) stops it first, the published message says a re-plan may differ."""
    sc = load_scenario(generate("paper", 2, max_deliveries=2, min_lot=20))
    cut = plan_anytime(sc, budget_s=0.001, gap=1e-4, work=WorkLimits(rounds=2))
    assert "the wall-clock safety net" in published_gap_note(cut)
    planned = plan_anytime(sc, budget_s=0.001, gap=1e-4, work=WorkLimits(rounds=0))
    note = published_gap_note(planned)
    assert "proven gap" in note and "safety net" not in note and "time budget" not in note


def _without_dc_stock(state: LiveState) -> LiveState:
    base = dict(BASE, distribution_centres=[dict(BASE["distribution_centres"][0], initial={"medicine": 0.0})])
    return dataclasses.replace(state, base=base)


def test_a_region_without_supply_gets_a_stated_no_supply_plan_not_an_error():
    """No active site with stock and nothing held at the centres: the optimizer plans the period all
    the same (a plan with no orders, its gap proven), all due demand short, said in the message."""
    plan = plan_period(_without_dc_stock(_state([])), PlannerCache(10))
    s = plan.summary
    assert s.status == "optimal" and s.orders == 0 and not plan.orders
    assert s.objective is not None and s.objective > 0 and s.gap == 0.0  # every unit short, proven
    figures = s.materials["medicine"]
    assert figures["planned_delivery"] == 0 and figures["planned_shortage"] == figures["due_with_backlog"] == 20
    assert any("no supply available" in w for w in plan.warnings)
    assert plan.supersede == [("O-old", "r1")]  # the new plan replaces the earlier orders


def test_without_supply_sites_the_stock_held_at_distribution_centres_is_still_planned():
    """Only DC1's 5 boxes exist: they go to RC1 (the only place they can go), the rest of its 20 is short;
    no supply leg is ordered."""
    plan = plan_period(_state([]), PlannerCache(10))
    s = plan.summary
    assert s.status == "optimal" and s.gap is not None
    assert plan.orders and all(o.leg != "supply" for o in plan.orders)
    assert sum(o.qty for o in plan.orders) == 5
    figures = s.materials["medicine"]
    assert figures["planned_delivery"] == 5 and figures["planned_shortage"] == 15
    assert any("no supply available" in w for w in plan.warnings)
