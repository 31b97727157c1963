"""One period's re-plan as read -> compute -> write: :func:`read_state` gathers the live state in one
read, the pure :func:`plan_period` turns it into a :class:`PeriodPlan` (scenario -> optimizer ->
orders), and the service stores it and publishes it through the outbox (``dispatcher.book``).

The plan id is deterministic, ``(emergency, period)``: each period has exactly one plan, stored
with its orders in one transaction BEFORE anything is published. A dispatcher killed after that
republishes the stored plan (same order ids); one killed before it has published nothing and simply
plans the period again. Either way no order goes out twice under different ids.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher import book
from dispatcher.carrier_details import centre_ends, registry_ends, registry_materials, with_carrier_details
from dispatcher.live import (base_dict, build_live_scenario, deliver_now, horizon_demand, in_registry_units,
                             orders_for_period, structure_key)
from dispatcher.snapshot import SupplyAvailability, SupplyNode, left_out_summary, supply_nodes, supply_snapshot
from optimizer import Planner, plan_anytime
from vreserve.scenario import load_scenario
from vreserve.schemas.dispatch import DispatchOrder, MaterialDetails, OrderEnd, PlanSummary

log = logging.getLogger("vreserve.dispatcher")


def plan_id_for(emergency_id: str, period: int) -> str:
    return f"P-{emergency_id}-{period:03d}"


@dataclass
class PlannerCache:
    """Compiled optimizer problems by model structure, and loaded demand files by source.

    A re-plan with the same supply nodes, centres and arcs reuses the compiled problem (CVXPY
    parameters): only the numbers change from one period to the next.
    """

    time_limit_s: float = 30.0
    gap: float = 1e-3
    planners: dict[tuple, Any] = field(default_factory=dict)
    bases: dict[str, dict] = field(default_factory=dict)

    def warm_up(self) -> float:
        """Compile and solve a tiny problem once, so the first real plan does not pay the one-off
        costs of a fresh process (CVXPY's lazy imports and first canonicalisation, the solver's
        library load: seconds). Returns the seconds it took."""
        t0 = time.perf_counter()
        tiny = {
            "name": "warm-up", "periods": 2,
            "materials": [{"id": "m", "unit": "units", "urgency": 0.5}],
            "supply_sites": [{"id": "w", "supply": {"m": [1, 0]}}],
            "distribution_centres": [{"id": "j", "capacity": 10, "initial": {"m": 1},
                                      "max_deliveries_per_period": 1}],
            "rescue_centres": [{"id": "k", "demand": {"m": [1, 1]}}],
            "min_lot": 1, "budget": 100,
        }
        self.solve(tiny)
        self.planners.clear()
        return time.perf_counter() - t0

    def material_ids(self, source: str) -> list[str]:
        return [m["id"] for m in self.base(source)["materials"]]

    def base(self, source: str) -> dict:
        """The demand file's scenario as contract data (read once per source)."""
        if source not in self.bases:
            self.bases[source] = base_dict(load_scenario(source))
        return self.bases[source]

    def solve(self, scenario_dict: dict):
        """Plan with the compiled problem of this structure (compiled on first use)."""
        scenario = load_scenario(scenario_dict)
        key = structure_key(scenario_dict)
        planner = self.planners.get(key)
        if planner is None:
            if len(self.planners) > 8:
                self.planners.clear()
            planner = self.planners[key] = Planner(scenario)
        # Anytime: a checked plan with its proven gap within seconds (greedy + fast bounds), improved
        # by the solver within deterministic work limits sized for the period's budget
        # (optimizer.work): the plan is a function of its inputs (no warm basis from earlier periods,
        # no fewer-arcs stage) unless the budget, a safety net, cut a stage short first (summary
        # "stopped_by_clock", stated in the plan's message); the plan is persisted before
        # publication either way, so a restart republishes the stored one.
        return plan_anytime(scenario, budget_s=self.time_limit_s, gap=self.gap, planner=planner)


@dataclass(frozen=True)
class LiveState:
    """Everything one period's plan depends on, read from the database in one go."""

    emergency: book.Emergency
    period: int
    now: datetime
    #: the demand file's scenario, its figures in the registry's units (what sites count and pick)
    base: dict
    #: one note per material whose unit was converted (said in the first plan's message)
    unit_notes: list[str]
    #: open orders this plan replaces: (order id, region)
    supersede: list[tuple[str, str]]
    rows: list[SupplyAvailability]
    nodes: list[SupplyNode]
    pipeline: book.Pipeline
    demand_overrides: dict[tuple[str, str, int], float]
    #: what a carrier needs about the supply sites and materials (dispatch order contract v2)
    site_ends: list[OrderEnd]
    material_details: dict[str, MaterialDetails]
    #: seconds the read took
    read_s: float

    @property
    def plan_id(self) -> str:
        return plan_id_for(self.emergency.emergency_id, self.period)

    @property
    def materials(self) -> list[str]:
        return [m["id"] for m in self.base["materials"]]

    @property
    def units(self) -> dict[str, str]:
        return {m["id"]: m.get("unit", "units") for m in self.base["materials"]}


@dataclass(frozen=True)
class PeriodPlan:
    """One period's plan, ready to store and publish: its summary, orders and the orders it replaces."""

    summary: PlanSummary
    orders: list[DispatchOrder]
    supersede: list[tuple[str, str]]
    warnings: list[str]


def make_plan(conn, emergency: book.Emergency, period: int, cache: PlannerCache, now: datetime,
              supersede_published_before: datetime | None = None) -> PeriodPlan:
    """Re-plan ``period`` of ``emergency`` from the live state (read-only; the caller persists)."""
    return plan_period(read_state(conn, emergency, period, cache, now, supersede_published_before), cache)


def read_state(conn, emergency: book.Emergency, period: int, cache: PlannerCache, now: datetime,
               supersede_published_before: datetime | None = None) -> LiveState:
    """The one read: the live warehouse, the emergency's orders and demand updates.

    Only open orders published before ``supersede_published_before`` are superseded (None: none,
    see :func:`book.open_orders`); every other order of the emergency is kept and counted as
    committed, so the plan covers the remainder.
    """
    t0 = time.perf_counter()
    source = emergency.demand_source
    base, unit_notes = in_registry_units(cache.base(source), book.material_units(conn, cache.material_ids(source)))
    mats = [m["id"] for m in base["materials"]]
    price = {m["id"]: float(m.get("price", 0.0)) for m in base["materials"]}
    supersede = book.open_orders(conn, emergency.emergency_id, supersede_published_before)
    exclude = [oid for oid, _ in supersede]
    rows = supply_snapshot(conn, emergency.region, now, emergency.grid_cells or None, mats, exclude)
    site_rows, material_rows = book.registry_details(conn, sorted({r.site_id for r in rows}), mats)
    return LiveState(
        emergency=emergency, period=period, now=now, base=base, unit_notes=unit_notes, supersede=supersede,
        rows=rows, nodes=supply_nodes(rows), pipeline=book.pipeline(conn, emergency.emergency_id, exclude, price),
        demand_overrides=book.demand_overrides(conn, emergency.region, emergency.declared_at),
        site_ends=registry_ends(site_rows), material_details=registry_materials(material_rows),
        read_s=time.perf_counter() - t0)


def plan_period(state: LiveState, cache: PlannerCache) -> PeriodPlan:
    """The pure step: live state -> scenario -> optimizer -> orders and summary (no I/O; ``cache``
    only holds compiled problems)."""
    em, period = state.emergency, state.period
    t1 = time.perf_counter()
    scenario = build_live_scenario(state.base, periods=em.periods, period=period, demand_scale=em.demand_scale,
                                   nodes=state.nodes, pipeline=state.pipeline, name=state.plan_id,
                                   demand_overrides=state.demand_overrides)
    t2 = time.perf_counter()
    warnings = input_warnings(state)
    # no supply site (nothing to pick): the optimizer still plans the stock held at the centres
    result = cache.solve(scenario)
    t3 = time.perf_counter()
    status = str(getattr(result.status, "value", result.status))
    if result.has_plan and result.gap is not None:
        warnings.append(published_gap_note(result))
    orders: list[DispatchOrder] = []
    supersede = state.supersede
    if result.has_plan:
        lines, more = orders_for_period(period, result.shipments_in,
                                        deliver_now(scenario, period, result.deliveries), state.nodes)
        warnings += more
        orders = with_carrier_details(dispatch_orders(state, lines), em,
                                      [*centre_ends(state.base), *state.site_ends], state.material_details)
    else:
        warnings.append(f"optimizer: {status}: {getattr(result, 'message', '')} "
                        + "; ".join(getattr(result, "infeasibility", ()) or ()))
        supersede = []  # no new plan to replace them with: earlier orders stand
    # build = the live scenario + the optimizer's model build/compile (or parameter update);
    # solve = the solver's own wall time (primary + arc stage)
    solve_s = result.solve_seconds or 0.0
    timings = {"snapshot": round(state.read_s, 4), "build": round((t2 - t1) + max(0.0, (t3 - t2) - solve_s), 4),
               "solve": round(solve_s, 4)}
    summary = PlanSummary(
        plan_id=state.plan_id, emergency_id=em.emergency_id, region=em.region, period=period,
        created_at=state.now, status=status, objective=result.objective, bound=result.bound, gap=result.gap,
        solve_seconds=result.solve_seconds, timings_s=timings, orders=len(orders), cancelled=len(supersede),
        supply_nodes=len(state.nodes), materials=material_figures(state, scenario, orders),
        message="; ".join(warnings)[:2000],
    )
    return PeriodPlan(summary, orders, supersede, warnings)


def input_warnings(state: LiveState) -> list[str]:
    """What the operator should know about the plan's inputs: unit conversions (first period),
    demand updates nobody can use, stock left out, no supply at all."""
    warnings: list[str] = list(state.unit_notes) if state.period == 1 else []
    known = {(rc["id"], m) for rc in state.base["rescue_centres"] for m in state.materials}
    unknown = sorted({f"{rc}/{m}" for (rc, m, _p) in state.demand_overrides if (rc, m) not in known})
    if unknown:
        warnings.append(f"demand updates for unknown rescue centre/material ignored: {', '.join(unknown[:10])}")
    _left_out, left_out_line = left_out_summary(state.rows)
    if left_out_line:
        warnings.append(left_out_line)
    if not state.nodes:
        warnings.append("no supply available in the region (no active site with a valid contract and a reading)")
    return warnings


def dispatch_orders(state: LiveState, lines) -> list[DispatchOrder]:
    """The period's order lines as dispatch orders (ids stable per plan, leg, origin, destination, material)."""
    emergency, period, plan_id, now, units = state.emergency, state.period, state.plan_id, state.now, state.units
    orders: list[DispatchOrder] = []
    for ln in lines:
        orders.append(DispatchOrder(
            order_id=DispatchOrder.make_id(plan_id, ln.leg, ln.origin, ln.destination, ln.material),
            plan_id=plan_id, emergency_id=emergency.emergency_id, region=emergency.region, period=period,
            leg=ln.leg, origin=ln.origin, destination=ln.destination, material=ln.material,
            qty=float(ln.qty), unit=units.get(ln.material, "units"), created_at=now,
        ))
    return orders


def material_figures(state: LiveState, scenario: dict, orders: list[DispatchOrder]) -> dict[str, dict]:
    """Per material, with units: what this period's plan counted on and promises."""
    em, period, units = state.emergency, state.period, state.units
    demand = horizon_demand(state.base, em.periods, em.demand_scale, state.demand_overrides)
    left_out, _line = left_out_summary(state.rows)
    per_mat: dict[str, dict] = {}
    for m in state.materials:
        due = sum(float(rc["demand"][m][period - 1]) for rc in scenario["rescue_centres"])
        planned = sum(o.qty for o in orders if o.material == m and o.leg == "delivery")
        per_mat[m] = {
            "unit": units[m],
            "available": sum(n.available.get(m, 0) for n in state.nodes),
            "demand_period": round(sum(v[period - 1] for (rc, mm), v in demand.items() if mm == m), 6),
            "due_with_backlog": round(due, 6),
            "planned_delivery": planned,
            "planned_pick": sum(o.qty for o in orders if o.material == m and o.leg == "supply"),
            "planned_shortage": round(max(0.0, due - planned), 6),
            # stale or distrusted stock the plan did not count on (reasons in the message)
            "left_out": left_out.get(m, 0),
        }
    return per_mat


def published_gap_note(result) -> str:
    """What the operator reads about the plan's quality: its proven gap and how it was found."""
    method = result.summary.get("method", "")
    note = (f"plan {result.status.value}: proven gap {result.gap:.2%} (weighted shortage {result.objective:,.1f}, "
            f"lower bound {result.bound:,.1f}) after {result.solve_seconds:.1f} s; {method}")
    if result.summary.get("stopped_by_clock"):
        note += ("; stopped by the period's time budget before its work limits (the wall-clock safety net: "
                 "a re-plan of the same inputs may differ)")
    return note
