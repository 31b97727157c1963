"""Pure planning logic: from the live state to the optimizer's scenario, and from its plan to orders.

Rolling re-plan for period ``p`` of an emergency with horizon ``T`` (the optimizer's contract):

* the horizon stays ``T`` periods (so the compiled problem is reused); demand and supply of past
  periods are zero;
* supply nodes (see :mod:`dispatcher.snapshot`) offer what is available now as stock ON HAND
  (the optimizer's ``on_hand``: all remaining periods together ship at most that), shippable in any
  of the remaining periods ``p..T`` (see :func:`live_supply`). The plan chooses when to take it; what
  a period does not take stays at the site and the next re-plan sees what is really left. (Offering
  it all in ``p`` and nothing later would make every re-plan believe it is the last chance to pick
  and hoard the most urgent material in the centres' shared capacity; an even share per period
  would keep stock at the sites that a plan could use earlier);
* a distribution centre's initial inventory is the scenario's initial stock plus what earlier
  supply orders brought in, minus what earlier delivery orders took out (failed, cancelled and
  closed orders moved nothing; delivered ones count with their delivered quantity, supply orders
  on the road with their picked quantity, and supply orders not yet picked with nothing);
* a rescue centre's demand in period ``p`` is the file's demand for ``p`` (times the declared
  ``demand_scale``) plus its backlog: demand of earlier periods not covered by earlier delivery
  orders (unmet need does not vanish at a period boundary); later periods keep the file's demand;
* a centre whose inventory has fallen below its safety stock (a failed delivery into it) gets its
  safety stock lowered to what it holds, rather than an infeasible plan;
* arcs: each supply node to every distribution centre when there are at most 3 centres; otherwise
  to its 2 nearest, with centres (which scenario packs give without coordinates) placed evenly on a
  circle around the supply nodes' centroid, in the file's order. Delivery arcs are the file's.

Only the flows of period ``p`` become orders; later periods are re-planned when they come.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from dispatcher.book import Pipeline
from dispatcher.crowd import Remaining
from dispatcher.snapshot import SupplyNode
from vreserve.units import conversion_factor

#: With more distribution centres than this, a supply node links only to its nearest ones.
ALL_ARCS_UP_TO = 3
NEAREST_CENTRES = 2


def base_dict(scenario: Any) -> dict:
    """A scenario (object or dict) as contract data."""
    return scenario.to_dict() if hasattr(scenario, "to_dict") else dict(scenario)


def in_registry_units(base: Mapping, registry_units: Mapping[str, str]) -> tuple[dict, list[str]]:
    """The demand file's scenario with every quantity of a material counted in the registry's unit
    (what sites report, pick and the orders carry), and a note per material whose unit changed.

    Quantities are multiplied by the factor (demand, supply, on hand, centre stock, safety stock,
    an explicit max inventory) and rounded to whole units (needs up, stock down); prices per unit
    are divided by it. A centre's capacity (all materials together) and the urgency indicators
    stay as the file gives them. A pair of units with no known factor is kept as is and said so
    (see :mod:`vreserve.units`). Converting an already converted scenario changes nothing."""
    out = copy.deepcopy(dict(base))
    factors: dict[str, float] = {}
    notes: list[str] = []
    for mat in out["materials"]:
        m, file_unit = mat["id"], str(mat.get("unit", "units"))
        to = registry_units.get(m)
        if to is None or to == file_unit:
            continue
        f = conversion_factor(file_unit, to)
        if f is None:
            notes.append(f"{m}: demand file counts in {file_unit!r}, the registry in {to!r}; no conversion "
                         "known, taken as the same unit")
            f = 1.0
        elif f != 1.0:
            notes.append(f"{m}: demand file counts in {file_unit!r}, the registry in {to!r}; converted "
                         f"(1 {file_unit} = {f:g} {to})")
        mat["unit"] = to
        if f != 1.0:
            factors[m] = f
            if mat.get("price"):
                mat["price"] = float(mat["price"]) / f
    for site in out.get("supply_sites", []):
        _convert(site.get("supply"), factors, _held)
        _convert(site.get("on_hand"), factors, _held)
        _convert(site.get("price"), factors, _per_unit)
    for dc in out.get("distribution_centres", []):
        _convert(dc.get("initial"), factors, _held)
        _convert(dc.get("safety_stock"), factors, _needed)
        # a max inventory equal to the capacity is the file's default (all materials together): kept
        explicit = {m: v for m, v in (dc.get("max_inventory") or {}).items() if float(v) != float(dc["capacity"])}
        _convert(explicit, factors, _held)
        if explicit:
            dc["max_inventory"].update(explicit)
    for rc in out.get("rescue_centres", []):
        _convert(rc.get("demand"), factors, _needed)
    return out, notes


# Converted quantities are whole units, rounded the safe way: orders move whole units, and a
# fractional demand would leave the optimizer an LP bound no integer plan reaches.
def _needed(x: float, f: float) -> float:
    return float(math.ceil(x * f - 1e-9))


def _held(x: float, f: float) -> float:
    return float(math.floor(x * f + 1e-9))


def _per_unit(x: float, f: float) -> float:
    return x / f


def _convert(values: dict | None, factors: Mapping[str, float], rule: Callable[[float, float], float]) -> None:
    """Apply ``rule(value, factor)`` in place to each converted material's number or series."""
    if not values:
        return
    for m, f in factors.items():
        if m in values:
            v = values[m]
            values[m] = [rule(float(x), f) for x in v] if isinstance(v, (list, tuple)) else rule(float(v), f)


def as_series(v: Any, periods: int) -> list[float]:
    """A scenario figure per period: a list as given, a single number repeated."""
    return list(v) if isinstance(v, (list, tuple)) else [float(v)] * periods


def horizon_demand(base: Mapping, periods: int, scale: float,
                   overrides: Mapping[tuple[str, str, int], float] | None = None) -> dict[tuple[str, str], list[float]]:
    """(rescue centre, material) -> demand per period, units: the first ``periods`` of the file,
    scaled, with the rescue centres' own updates (demand topic, taken as given) replacing figures."""
    out = {}
    for rc in base["rescue_centres"]:
        for m, v in (rc.get("demand") or {}).items():
            out[(rc["id"], m)] = [round(x * scale, 6) for x in as_series(v, base["periods"])[:periods]]
    for (rc, m, period), qty in (overrides or {}).items():
        if (rc, m) in out and 1 <= period <= periods:
            out[(rc, m)][period - 1] = float(qty)
    return out


def centre_positions(nodes: Sequence[SupplyNode], centre_ids: Sequence[str]) -> dict[str, tuple[float, float]]:
    if not nodes:
        return {c: (0.0, 0.0) for c in centre_ids}
    lat0 = sum(n.lat for n in nodes) / len(nodes)
    lon0 = sum(n.lon for n in nodes) / len(nodes)
    spread = max(max(abs(n.lat - lat0) for n in nodes), max(abs(n.lon - lon0) for n in nodes), 1e-3) / 2
    return {
        c: (lat0 + spread * math.sin(2 * math.pi * i / len(centre_ids)),
            lon0 + spread * math.cos(2 * math.pi * i / len(centre_ids)))
        for i, c in enumerate(centre_ids)
    }


def live_supply(available: float, t: int, periods: int) -> tuple[float, list[float]]:
    """(on hand, supply per period) of a node holding ``available`` now: whole units, shippable in
    any of periods ``t..periods-1`` (0-based) and none before; the optimizer's on-hand limit keeps
    the periods together within what is there."""
    units = float(math.floor(available + 1e-9))
    return units, [0.0] * t + [units] * (periods - t)


def supply_arcs(nodes: Sequence[SupplyNode], centre_ids: Sequence[str]) -> list[tuple[str, str]]:
    if len(centre_ids) <= ALL_ARCS_UP_TO:
        return [(n.node_id, c) for n in nodes for c in centre_ids]
    pos = centre_positions(nodes, centre_ids)
    arcs = []
    for n in nodes:
        near = sorted(centre_ids, key=lambda c: ((pos[c][0] - n.lat) ** 2 + (pos[c][1] - n.lon) ** 2, c))
        arcs.extend((n.node_id, c) for c in near[:NEAREST_CENTRES])
    return arcs


def build_live_scenario(
    base: Mapping,
    *,
    periods: int,
    period: int,
    demand_scale: float,
    nodes: Sequence[SupplyNode],
    pipeline: Pipeline,
    name: str,
    demand_overrides: Mapping[tuple[str, str, int], float] | None = None,
) -> dict:
    """The optimizer scenario (contract data) for re-planning ``period`` from the live state."""
    if period < 1 or period > periods:
        raise ValueError(f"period {period} outside 1..{periods}")
    mats = [m["id"] for m in base["materials"]]
    price = {m["id"]: float(m.get("price", 0.0)) for m in base["materials"]}
    t = period - 1
    # distribution centres with the live inventory
    dcs = []
    for dc in base["distribution_centres"]:
        initial, safety = {}, {}
        for m in mats:
            have = float((dc.get("initial") or {}).get(m, 0.0))
            have += pipeline.into_centre.get((dc["id"], m), 0.0) - pipeline.out_of_centre.get((dc["id"], m), 0.0)
            have = max(0.0, round(have, 6))
            cap_m = float((dc.get("max_inventory") or {}).get(m, dc["capacity"]))
            initial[m] = min(have, cap_m)
            safety[m] = min(float((dc.get("safety_stock") or {}).get(m, 0.0)), initial[m])
        d = {k: v for k, v in dc.items() if k not in ("initial", "safety_stock")}
        d["initial"] = initial
        d["safety_stock"] = safety
        # the capacity binds all materials together: never below what the centre already holds
        d["capacity"] = max(float(dc["capacity"]), sum(initial.values()))
        dcs.append(d)
    # rescue centres: past demand zero, backlog added to this period
    demand = horizon_demand(base, periods, demand_scale, demand_overrides)
    rcs = []
    for rc in base["rescue_centres"]:
        dem = {}
        for m in mats:
            series = demand.get((rc["id"], m), [0.0] * periods)
            before = sum(series[:t])
            backlog = max(0.0, before - pipeline.to_rescue_centre.get((rc["id"], m), 0.0))
            dem[m] = [0.0] * t + [round(series[t] + backlog, 6)] + list(series[t + 1:])
        rcs.append({"id": rc["id"], "demand": dem})
    sites = []
    for n in nodes:
        offer = {m: live_supply(float(n.available.get(m, 0)), t, periods) for m in mats}
        sites.append({"id": n.node_id, "supply": {m: series for m, (_, series) in offer.items()},
                      "on_hand": {m: units for m, (units, _) in offer.items()},
                      "price": {m: price[m] for m in mats}})
    arcs: dict[str, Any] = {"supply": [list(a) for a in supply_arcs(nodes, [d["id"] for d in dcs])]}
    if base.get("arcs") and base["arcs"].get("delivery") is not None:
        arcs["delivery"] = base["arcs"]["delivery"]
    out = {
        "name": name,
        "periods": periods,
        "theta": base.get("theta", "exp"),
        "materials": base["materials"],
        "supply_sites": sites,
        "distribution_centres": dcs,
        "rescue_centres": rcs,
        "arcs": arcs,
    }
    if base.get("budget") is not None:
        out["budget"] = max(0.0, float(base["budget"]) - pipeline.spent)
    if base.get("min_lot") is not None:
        out["min_lot"] = base["min_lot"]
    return out


def structure_key(scenario: Mapping) -> tuple:
    """What fixes the compiled model's shape: ids, arcs, periods, options present (not the numbers)."""
    return (
        scenario["periods"],
        tuple(m["id"] for m in scenario["materials"]),
        tuple(s["id"] for s in scenario["supply_sites"]),
        tuple(d["id"] for d in scenario["distribution_centres"]),
        tuple(r["id"] for r in scenario["rescue_centres"]),
        tuple(map(tuple, (scenario.get("arcs") or {}).get("supply") or ())),
        tuple(map(tuple, (scenario.get("arcs") or {}).get("delivery") or ())),
        "budget" in scenario,
        "min_lot" in scenario,
    )


@dataclass(frozen=True)
class OrderLine:
    """One order to make: a leg of one material, in whole units of the material."""

    leg: str
    origin: str
    destination: str
    material: str
    qty: int


def orders_for_period(
    period: int,
    shipments_in: Sequence[Any],
    deliveries: Sequence[tuple[str, str, str, int]],
    nodes: Sequence[SupplyNode],
) -> tuple[list[OrderLine], list[str]]:
    """Orders for ``period`` from the optimizer's flows; crowd nodes become picks at their sites.

    ``deliveries`` are this period's (centre, rescue centre, material, units), see :func:`deliver_now`.
    Returns the order lines (sorted, aggregated per leg/origin/destination/material) and warnings
    (a crowd allocation its sites could not cover: never expected, since node supply is the sum of
    its sites' availability, but said out loud rather than hidden).
    """
    by_node = {n.node_id: n for n in nodes}
    remaining = Remaining(r for n in nodes for r in n.members)
    lines: dict[tuple[str, str, str, str], int] = {}
    warnings: list[str] = []

    def add(leg, origin, destination, material, qty):
        if qty > 0:
            key = (leg, origin, destination, material)
            lines[key] = lines.get(key, 0) + int(qty)

    flows = sorted((f for f in shipments_in if f.period == period),
                   key=lambda f: (f.origin, f.destination, f.material))
    for f in flows:
        qty = int(round(f.qty))
        if qty <= 0:
            continue
        node = by_node.get(f.origin)
        if node is None:
            warnings.append(f"flow from unknown supply node {f.origin!r} ignored")
            continue
        picks, short = remaining.split(node.members, f.material, qty)
        for site_id, units in picks:
            add("supply", site_id, f.destination, f.material, units)
        if short:
            warnings.append(f"{f.origin}: {short} units of {f.material} to {f.destination} not covered by its sites")
    for origin, destination, material, qty in deliveries:
        add("delivery", origin, destination, material, int(qty))
    return [OrderLine(*k, q) for k, q in sorted(lines.items())], warnings


def deliver_now(scenario: Mapping, period: int, deliveries: Sequence[Any]) -> list[tuple[str, str, str, int]]:
    """This period's deliveries, topped up with what the centres hold and nobody gets this period.

    The optimizer minimises total urgency-weighted shortage over the horizon; it is indifferent to
    *when* a unit is delivered, so a plan may keep stock in a centre for a later period while a
    rescue centre goes short now. In a rolling re-plan the later periods are planned again anyway,
    so after the solve each centre's stock that this period's plan leaves unused (above its safety
    stock) goes to rescue centres still short in this period, largest shortage first. The model's
    objective can only get better by it (a unit delivered now is a unit of shortage less now) and
    no constraint of the period is broken: deliveries stay within the centre's opening stock and
    the rescue centre's demand; with a delivery limit or a minimum lot only arcs the plan already
    uses are topped up.
    """
    t = period - 1
    mats = [m["id"] for m in scenario["materials"]]
    dcs = {d["id"]: d for d in scenario["distribution_centres"]}
    demand = {(rc["id"], m): float(rc["demand"][m][t]) for rc in scenario["rescue_centres"] for m in mats}
    y: dict[tuple[str, str, str], int] = {}
    for f in deliveries:
        if f.period == period and round(f.qty) > 0:
            y[(f.origin, f.destination, f.material)] = y.get((f.origin, f.destination, f.material), 0) + int(round(f.qty))
    if scenario.get("arcs", {}).get("delivery") is not None:
        arcs = [tuple(a) for a in scenario["arcs"]["delivery"]]
    else:
        arcs = [(j, rc["id"]) for j in dcs for rc in scenario["rescue_centres"]]
    used = {(j, k) for (j, k, _m) in y}
    restricted = scenario.get("min_lot") is not None or any(
        d.get("max_deliveries_per_period") is not None for d in dcs.values())
    for j, dc in dcs.items():
        for m in mats:
            out = sum(q for (jj, _k, mm), q in y.items() if jj == j and mm == m)
            spare = int(math.floor(float(dc["initial"][m]) - float(dc["safety_stock"][m]) - out + 1e-9))
            if spare <= 0:
                continue
            targets = []
            for (jj, k) in arcs:
                if jj != j or (restricted and (j, k) not in used):
                    continue
                got = sum(q for (_j, kk, mm), q in y.items() if kk == k and mm == m)
                short = int(math.floor(demand.get((k, m), 0.0) - got + 1e-9))
                if short > 0:
                    targets.append((short, k))
            for short, k in sorted(targets, key=lambda x: (-x[0], x[1])):
                if spare <= 0:
                    break
                add = min(short, spare)
                y[(j, k, m)] = y.get((j, k, m), 0) + add
                spare -= add
    return [(j, k, m, q) for (j, k, m), q in sorted(y.items()) if q > 0]
