"""One period's re-plan: snapshot -> scenario -> optimizer -> orders, persisted before publication.

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
from dispatcher.carrier_details import add_carrier_details
from dispatcher.live import (base_dict, build_live_scenario, deliver_now, horizon_demand, in_registry_units,
                             orders_for_period, structure_key)
from dispatcher.snapshot import left_out_summary, supply_nodes, supply_snapshot
from vreserve.schemas.dispatch import DispatchOrder, PlanSummary, stable_id

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
        if source not in self.bases:
            from optimizer import load_scenario

            self.bases[source] = base_dict(load_scenario(source))
        return self.bases[source]

    def solve(self, scenario_dict: dict):
        import optimizer

        scenario = optimizer.load_scenario(scenario_dict)
        planner_cls = getattr(optimizer, "Planner", None)
        if planner_cls is None:  # optimizer without the re-solve API: one-shot plan
            return optimizer.plan(scenario, time_limit_s=self.time_limit_s, gap=self.gap)
        key = structure_key(scenario_dict)
        planner = self.planners.get(key)
        if planner is None:
            if len(self.planners) > 8:
                self.planners.clear()
            planner = self.planners[key] = planner_cls(scenario)
        # Anytime: a checked plan with its proven gap within seconds (greedy + fast bounds), improved
        # by the solver within the period's budget; the best checked plan is published. Plans are a
        # function of their inputs (no warm basis from earlier periods, no fewer-arcs stage) unless
        # the budget cut the improvement short (summary "stopped_by_clock"); the plan is persisted
        # before publication either way, so a restart republishes the stored one.
        from optimizer.anytime import plan_anytime
        return plan_anytime(scenario, budget_s=self.time_limit_s, gap=self.gap, planner=planner)


@dataclass
class PlannedPeriod:
    summary: PlanSummary
    orders: list[DispatchOrder]
    supersede: list[tuple[str, str]]
    warnings: list[str]


def make_plan(conn, emergency: book.Emergency, period: int, cache: PlannerCache, now: datetime,
              supersede_published_before: datetime | None = None) -> PlannedPeriod:
    """Re-plan ``period`` of ``emergency`` from the live state (read-only; the caller persists).

    Only open orders published before ``supersede_published_before`` are superseded (None: none,
    see :func:`book.open_orders`); every other order of the emergency is kept and counted as
    committed, so the plan covers the remainder.
    """
    t0 = time.perf_counter()
    # orders count in the registry's unit (what the sites count and pick in): the demand file's
    # figures are converted to it, and the conversion is said in the first plan's message
    base, unit_notes = in_registry_units(cache.base(emergency.demand_source),
                                         book.material_units(conn, cache.material_ids(emergency.demand_source)))
    mats = [m["id"] for m in base["materials"]]
    units = {m["id"]: m.get("unit", "units") for m in base["materials"]}
    price = {m["id"]: float(m.get("price", 0.0)) for m in base["materials"]}
    supersede = book.open_orders(conn, emergency.emergency_id, supersede_published_before)
    exclude = [oid for oid, _ in supersede]
    rows = supply_snapshot(conn, emergency.region, now, emergency.grid_cells or None, mats, exclude)
    nodes = supply_nodes(rows)
    pipe = book.pipeline(conn, emergency.emergency_id, exclude, price)
    overrides = book.demand_overrides(conn, emergency.region, emergency.declared_at)
    t1 = time.perf_counter()
    plan_id = plan_id_for(emergency.emergency_id, period)
    scenario = build_live_scenario(base, periods=emergency.periods, period=period,
                                   demand_scale=emergency.demand_scale, nodes=nodes, pipeline=pipe, name=plan_id,
                                   demand_overrides=overrides)
    t2 = time.perf_counter()
    warnings: list[str] = []
    if period == 1:
        warnings += unit_notes
    known = {(rc["id"], m) for rc in base["rescue_centres"] for m in mats}
    unknown = sorted({f"{rc}/{m}" for (rc, m, _p) in overrides if (rc, m) not in known})
    if unknown:
        warnings.append(f"demand updates for unknown rescue centre/material ignored: {', '.join(unknown[:10])}")
    left_out, left_out_line = left_out_summary(rows)
    if left_out_line:
        warnings.append(left_out_line)
    if not nodes:
        warnings.append("no supply available in the region (no active site with a valid contract and a reading)")
    result = cache.solve(scenario)
    t3 = time.perf_counter()
    status = str(getattr(result.status, "value", result.status))
    if result.has_plan and result.gap is not None:
        warnings.append(published_gap_note(result))
    orders: list[DispatchOrder] = []
    if result.has_plan:
        lines, more = orders_for_period(period, result.shipments_in,
                                        deliver_now(scenario, period, result.deliveries), nodes)
        warnings += more
        for ln in lines:
            orders.append(DispatchOrder(
                order_id=DispatchOrder.make_id(plan_id, ln.leg, ln.origin, ln.destination, ln.material),
                plan_id=plan_id, emergency_id=emergency.emergency_id, region=emergency.region, period=period,
                leg=ln.leg, origin=ln.origin, destination=ln.destination, material=ln.material,
                qty=float(ln.qty), unit=units.get(ln.material, "units"), created_at=now,
            ))
        orders = add_carrier_details(conn, orders, emergency, base)
    else:
        warnings.append(f"optimizer: {status}: {getattr(result, 'message', '')} "
                        + "; ".join(getattr(result, "infeasibility", ()) or ()))
        supersede = []  # no new plan to replace them with: earlier orders stand
    # figures per material, with units: what this period's plan counted on and promises
    demand = horizon_demand(base, emergency.periods, emergency.demand_scale, overrides)
    per_mat: dict[str, dict] = {}
    for m in mats:
        due = sum(float(rc["demand"][m][period - 1]) for rc in scenario["rescue_centres"])
        planned = sum(o.qty for o in orders if o.material == m and o.leg == "delivery")
        per_mat[m] = {
            "unit": units[m],
            "available": sum(n.available.get(m, 0) for n in nodes),
            "demand_period": round(sum(v[period - 1] for (rc, mm), v in demand.items() if mm == m), 6),
            "due_with_backlog": round(due, 6),
            "planned_delivery": planned,
            "planned_pick": sum(o.qty for o in orders if o.material == m and o.leg == "supply"),
            "planned_shortage": round(max(0.0, due - planned), 6),
            # stale or distrusted stock the plan did not count on (reasons in the message)
            "left_out": left_out.get(m, 0),
        }
    summary = PlanSummary(
        plan_id=plan_id, emergency_id=emergency.emergency_id, region=emergency.region, period=period,
        created_at=now, status=status, objective=result.objective, bound=result.bound, gap=result.gap,
        solve_seconds=result.solve_seconds,
        # build = the live scenario + the optimizer's model build/compile (or parameter update);
        # solve = the solver's own wall time (primary + arc stage)
        timings_s={"snapshot": round(t1 - t0, 4),
                   "build": round((t2 - t1) + max(0.0, (t3 - t2) - (result.solve_seconds or 0.0)), 4),
                   "solve": round(result.solve_seconds or 0.0, 4)},
        orders=len(orders), cancelled=len(supersede), supply_nodes=len(nodes), materials=per_mat,
        message="; ".join(warnings)[:2000],
    )
    return PlannedPeriod(summary, orders, supersede, warnings)


def published_gap_note(result) -> str:
    """What the operator reads about the plan's quality: its proven gap and how it was found."""
    method = result.summary.get("method", "")
    note = (f"plan {result.status.value}: proven gap {result.gap:.2%} (weighted shortage {result.objective:,.1f}, "
            f"lower bound {result.bound:,.1f}) after {result.solve_seconds:.1f} s; {method}")
    if result.summary.get("stopped_by_clock"):
        note += "; stopped by the period's time budget"
    return note


def snapshot_identity(rows) -> str:
    """A short fingerprint of a snapshot (for logs: two runs that saw the same stock print the same)."""
    return stable_id("SNAP", *[(r.site_id, r.material_id, r.available) for r in rows], length=10)
