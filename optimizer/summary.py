"""Plan summary: demand, delivered, shortage and shortage rates per material and in total, with units.

The ideal shortage rate of a material is what would remain if every available unit reached demand:
max(0, D - A) / D, where D is the total demand over the horizon and A the units available to deliver
within it: initial stock above safety stock plus supply in periods 1..T-1 (receipts of the last
period are deliverable only after the horizon). It ignores timing and routing, so it is a lower bound
on any plan's shortage rate.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.index import Numbers
from optimizer.scenario import Scenario


def available_units(n: Numbers) -> np.ndarray:
    """Units of each material deliverable within the horizon at best, [M]."""
    stock = np.maximum(n.initial - n.safety, 0.0).sum(axis=0)
    return stock + n.supply[:, :, :-1].sum(axis=(0, 2))


def summarise(sc: Scenario, n: Numbers, shortage: np.ndarray | None, spent: float | None = None) -> dict[str, Any]:
    """``shortage`` is [K, M, T] in units of each material, or None when there is no plan."""
    demand = n.demand.sum(axis=(0, 2))
    avail = available_units(n)
    ideal_short = np.maximum(demand - avail, 0.0)
    per_material: dict[str, Any] = {}
    for i, m in enumerate(sc.materials):
        d = float(demand[i])
        row: dict[str, Any] = {
            "unit": m.unit,
            "theta": float(n.theta[i]),
            "demand": d,
            "available": float(avail[i]),
            "ideal_shortage_rate": (float(ideal_short[i]) / d) if d > 0 else 0.0,
        }
        if shortage is not None:
            s = float(shortage[:, i, :].sum())
            row |= {"delivered": d - s, "shortage": s, "shortage_rate": (s / d) if d > 0 else 0.0}
        per_material[m.id] = row
    total_d = float(demand.sum())
    out: dict[str, Any] = {
        "scenario": sc.name,
        "periods": sc.periods,
        "budget": sc.budget,
        "currency_note": "prices and budget in currency units (the scenario's; the packs use CNY)",
        "total": {
            "unit": "units (all materials together)",
            "demand": total_d,
            "available": float(avail.sum()),
            "ideal_shortage_rate": float(ideal_short.sum()) / total_d if total_d > 0 else 0.0,
        },
        "materials": per_material,
    }
    if shortage is not None:
        s = float(shortage.sum())
        out["total"] |= {"delivered": total_d - s, "shortage": s, "shortage_rate": s / total_d if total_d > 0 else 0.0}
    if spent is not None:
        out["spent"] = spent
    return out
