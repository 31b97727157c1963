"""An independent feasibility check of a plan: every constraint and the objective recomputed from the
plan's flows and the scenario, with plain dictionaries and loops.

Why separate: a model bug (a wrong index, a sign, a dropped row) makes the solver's plan look optimal
while breaking a rule the operator relies on. This module therefore shares NOTHING with the model
code (no ``optimizer.index``, ``model``, ``summary`` or numpy layouts): it reads the validated
``Scenario`` dataclasses (the input contract) and the ``PlanResult``'s flows, and recomputes stock
balances, limits, money and the weighted shortage on its own. The only shared piece is the shortage
coefficient theta of each material, which is an INPUT of the model (``optimizer.urgency``), not part
of it.

Rules checked (periods 1..T; receipts of period t can be delivered from t + 1):
- every flow is on a declared arc, in a valid period, a whole non-negative number of units;
- supply: what leaves site w for material m in period t <= its supply; over all periods <= on hand;
- stock balance of centre j: I[t] = I[t-1] + received[t] - issued[t], issued[t] <= I[t-1],
  safety stock <= I[t] <= max inventory, sum over materials of I[t] <= capacity;
- deliveries to rescue centre k for m in t <= its demand;
- money: sum of price x shipped <= budget;
- minimum lot: a delivery arc used in period t carries >= min_lot units (all materials);
- delivery limit: centre j serves at most max_deliveries_per_period rescue centres in each period;
- objective: sum over k, m, t of theta_m x (demand - delivered) equals the plan's objective, the
  reported shortage list matches, and bound <= objective.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from optimizer.result import PlanResult
from optimizer.scenario import Scenario
from optimizer.urgency import urgency

ABS_TOL = 1e-6  # units of a material; quantities are whole units, so this only absorbs float noise
REL_TOL = 1e-7  # relative, for money and the objective


@dataclass(frozen=True)
class PlanCheck:
    """What the independent check found: ``violations`` empty means every rule holds."""

    violations: tuple[str, ...]
    objective: float  # sum theta x shortage recomputed from the deliveries
    spent: float  # currency units, recomputed from the shipments

    @property
    def ok(self) -> bool:
        return not self.violations


def _over(value: float, limit: float, rel: bool = False) -> bool:
    tol = ABS_TOL + (REL_TOL * abs(limit) if rel else 0.0)
    return value > limit + tol


def check_plan(sc: Scenario, plan: PlanResult, *, max_messages: int = 50) -> PlanCheck:
    """Recompute every constraint and the objective of ``plan`` for scenario ``sc``."""
    bad: list[str] = []
    shipped, delivered = _flows(sc, plan, bad)
    spent = _check_supply_and_money(sc, shipped, bad)
    _check_stock(sc, shipped, delivered, bad)
    objective = _check_demand_and_objective(sc, plan, delivered, bad)
    _check_arc_rules(sc, delivered, bad)
    if plan.has_plan and plan.bound is not None and _over(plan.bound, objective, rel=True):
        bad.append(f"bound {plan.bound} above the recomputed objective {objective}")
    more = (f"... and {len(bad) - max_messages} more",) if len(bad) > max_messages else ()
    return PlanCheck(tuple(bad[:max_messages]) + more, objective, spent)


def _flows(sc: Scenario, plan: PlanResult, bad: list[str]):
    """(shipped[(w, j, m, t)], delivered[(j, k, m, t)]) summed per key, t from 1; bad flows noted."""
    supply_arcs = set(sc.supply_arcs())
    delivery_arcs = set(sc.delivery_arcs())
    mats = set(sc.material_ids)
    shipped: dict[tuple, float] = defaultdict(float)
    delivered: dict[tuple, float] = defaultdict(float)
    for kind, flows, arcs, out in (("shipment", plan.shipments_in, supply_arcs, shipped),
                                   ("delivery", plan.deliveries, delivery_arcs, delivered)):
        for f in flows:
            if (f.origin, f.destination) not in arcs:
                bad.append(f"{_where(kind, f)}: not a declared arc")
            if f.material not in mats:
                bad.append(f"{_where(kind, f)}: unknown material")
            if not (1 <= f.period <= sc.periods):
                bad.append(f"{_where(kind, f)}: period outside 1..{sc.periods}")
                continue
            if f.qty < -ABS_TOL or abs(f.qty - round(f.qty)) > ABS_TOL:
                bad.append(f"{_where(kind, f)}: quantity {f.qty} is not a whole non-negative number")
            out[(f.origin, f.destination, f.material, f.period)] += f.qty
    return shipped, delivered


def _where(kind: str, f) -> str:
    """A flow named in a violation (only then: formatting every flow took 0.1 s at province size)."""
    return f"{kind} {f.origin}->{f.destination} {f.material} period {f.period}"


def _check_supply_and_money(sc: Scenario, shipped: dict, bad: list[str]) -> float:
    per_period: dict[tuple, float] = defaultdict(float)
    per_site: dict[tuple, float] = defaultdict(float)
    sites = {w.id: w for w in sc.supply_sites}
    spent = 0.0
    for (w, _j, m, t), q in shipped.items():
        per_period[(w, m, t)] += q
        per_site[(w, m)] += q
        if w in sites and m in sites[w].price:
            spent += q * sites[w].price[m][t - 1]
    for (w, m, t), q in per_period.items():
        if w in sites and _over(q, sites[w].supply.get(m, (0.0,) * sc.periods)[t - 1]):
            bad.append(f"supply: site {w}, material {m}, period {t}: ships {q} of {sites[w].supply[m][t - 1]}")
    for (w, m), q in per_site.items():
        on_hand = sites[w].on_hand if w in sites else None
        if on_hand is not None and _over(q, on_hand[m]):
            bad.append(f"on hand: site {w}, material {m}: ships {q} over the horizon of {on_hand[m]} held")
    if sc.budget is not None and _over(spent, sc.budget, rel=True):
        bad.append(f"budget: spends {spent:,.2f} of {sc.budget:,.2f}")
    return spent


def _check_stock(sc: Scenario, shipped: dict, delivered: dict, bad: list[str]) -> None:
    received: dict[tuple, float] = defaultdict(float)
    issued: dict[tuple, float] = defaultdict(float)
    for (_w, j, m, t), q in shipped.items():
        received[(j, m, t)] += q
    for (j, _k, m, t), q in delivered.items():
        issued[(j, m, t)] += q
    for dc in sc.distribution_centres:
        stock = {m: float(dc.initial[m]) for m in sc.material_ids}
        for t in range(1, sc.periods + 1):
            for m in sc.material_ids:
                out = issued.get((dc.id, m, t), 0.0)
                if _over(out, stock[m]):
                    bad.append(f"stock: centre {dc.id}, material {m}, period {t}: issues {out} but held {stock[m]} "
                               f"at the end of the previous period")
                stock[m] += received.get((dc.id, m, t), 0.0) - out
                if stock[m] < dc.safety_stock[m] - ABS_TOL:
                    bad.append(f"safety stock: centre {dc.id}, material {m}, period {t}: holds {stock[m]} "
                               f"below {dc.safety_stock[m]}")
                if _over(stock[m], min(dc.max_inventory[m], dc.capacity)):
                    bad.append(f"max inventory: centre {dc.id}, material {m}, period {t}: holds {stock[m]} above "
                               f"{min(dc.max_inventory[m], dc.capacity)}")
            total = sum(stock.values())
            if _over(total, dc.capacity):
                bad.append(f"capacity: centre {dc.id}, period {t}: holds {total} of {dc.capacity}")


def _check_demand_and_objective(sc: Scenario, plan: PlanResult, delivered: dict, bad: list[str]) -> float:
    theta = urgency(sc.materials, sc.theta).coefficients
    got: dict[tuple, float] = defaultdict(float)
    for (_j, k, m, t), q in delivered.items():
        got[(k, m, t)] += q
    reported = defaultdict(float)
    for s in plan.shortage:
        reported[(s.rescue_centre, s.material, s.period)] += s.qty
    objective = 0.0
    for rc in sc.rescue_centres:
        for m in sc.material_ids:
            for t in range(1, sc.periods + 1):
                need = float(rc.demand[m][t - 1])
                q = got.get((rc.id, m, t), 0.0)
                if _over(q, need):
                    bad.append(f"demand: rescue centre {rc.id}, material {m}, period {t}: receives {q} of {need} due")
                short = max(need - q, 0.0)
                objective += theta[m] * short
                if plan.has_plan and abs(reported.get((rc.id, m, t), 0.0) - short) > ABS_TOL:
                    bad.append(f"shortage list: rescue centre {rc.id}, material {m}, period {t}: says "
                               f"{reported.get((rc.id, m, t), 0.0)}, recomputed {short}")
    if plan.has_plan:
        if plan.objective is None or abs(plan.objective - objective) > ABS_TOL + 1e-6 * max(1.0, abs(objective)):
            bad.append(f"objective: plan says {plan.objective}, recomputed {objective}")
    elif plan.deliveries or plan.shipments_in or plan.objective is not None:
        bad.append(f"status {plan.status.value} but the result carries flows or an objective")
    return objective


def _check_arc_rules(sc: Scenario, delivered: dict, bad: list[str]) -> None:
    per_arc: dict[tuple, float] = defaultdict(float)
    for (j, k, _m, t), q in delivered.items():
        per_arc[(j, k, t)] += q
    served: dict[tuple, int] = defaultdict(int)
    for (j, k, t), q in per_arc.items():
        if q <= ABS_TOL:
            continue
        served[(j, t)] += 1
        if sc.min_lot is not None and q < sc.min_lot - ABS_TOL:
            bad.append(f"minimum lot: {j}->{k} period {t} carries {q} < {sc.min_lot}")
    limits = {dc.id: dc.max_deliveries_per_period for dc in sc.distribution_centres}
    for (j, t), count in served.items():
        cap = limits.get(j)
        if cap is not None and count > cap:
            bad.append(f"delivery limit: centre {j}, period {t}: serves {count} rescue centres, at most {cap}")
