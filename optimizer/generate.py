"""Synthetic scenarios at paper, city and province size, for benchmarks and tests.

Nodes are placed uniformly in a unit square (a city or a province, scaled away). Each supply site
ships to its 2 nearest distribution centres and each rescue centre is served by its 3 nearest
centres (sparse arcs, built as index lists). Demand per rescue centre = a lognormal population x an
epidemic curve (logistic growth of active cases) x a per-case need per material; supply over the
horizon is about 90 % of demand (short by ~10 %, as in the source's cases), spread over sites and
periods; centres start with stock for about the first period and a little safety stock. Prices
are lognormal around a per-material base (the first material of each 4 is "ventilator-like":
durable, life-critical, few units, dear). The budget buys ``budget_fraction`` of all supply at its
prices (default 0.8, so it binds). Distribution and rescue centres carry a place for the carriers of
their orders: the unit square mapped onto a box around Hubei (a city ~0.5 degrees wide, a province
~5), with illustrative names, addresses and phone numbers (+86 000 ... is not a real number).
"""
from __future__ import annotations

from typing import Any

import numpy as np

SIZES: dict[str, dict[str, int]] = {
    "paper": {"M": 4, "T": 10, "W": 2, "J": 3, "K": 5},
    "city": {"M": 10, "T": 10, "W": 50, "J": 10, "K": 100},
    "province": {"M": 20, "T": 14, "W": 500, "J": 40, "K": 400},
}


#: South-west corner (lat, lon) and width in degrees of the box the unit square is mapped onto.
_BOX = {"paper": (30.40, 114.05, 0.5), "city": (30.40, 114.05, 0.5), "province": (29.5, 110.5, 5.0)}


def _places(size: str, kind: str, ids: list[str], pos: np.ndarray) -> list[dict[str, Any]]:
    """A place per node (name, illustrative address, WGS 84 degrees, contact), from its position."""
    lat0, lon0, width = _BOX[size]
    return [{"name": f"{kind} {node_id}", "address": f"{kind} {node_id}, synthetic {size} (illustrative address)",
             "lat": round(lat0 + float(p[0]) * width, 5), "lon": round(lon0 + float(p[1]) * width, 5),
             "contact": {"name": f"{node_id} desk", "phone": f"+86 000 {3000 + i // 10_000:04d} {i % 10_000:04d}"}}
            for i, (node_id, p) in enumerate(zip(ids, pos))]


def _nearest(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    d = ((src[:, None, :] - dst[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(d, axis=1)[:, :min(n, dst.shape[0])]


def epidemic_curve(T: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Relative active cases per period: logistic growth that saturates in the horizon, sums to 1."""
    t = np.arange(1, T + 1, dtype=float)
    mid = T * (0.45 if rng is None else rng.uniform(0.35, 0.6))
    c = 1.0 / (1.0 + np.exp(-(t - mid) / max(T / 8.0, 0.5)))
    return c / c.sum()


def generate(size: str = "city", seed: int = 0, *, budget_fraction: float | None = 0.8,
             max_deliveries: int | None = None, min_lot: float | None = None) -> dict[str, Any]:
    """A scenario dict (the public contract) of the given size."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    dims = SIZES[size]
    M, T, W, J, K = dims["M"], dims["T"], dims["W"], dims["J"], dims["K"]
    rng = np.random.default_rng(seed)
    kinds = ["ventilator", "medicine", "alcohol", "food"]
    base_price = {"ventilator": 80000.0, "medicine": 60.0, "alcohol": 25.0, "food": 30.0}
    per_case = {"ventilator": 0.02, "medicine": 3.0, "alcohol": 2.0, "food": 4.0}
    materials = []
    for i in range(M):
        kind = kinds[i % 4]
        vent = kind == "ventilator"
        materials.append({
            "id": f"m{i + 1:02d}", "unit": "pieces" if vent else "units", "kind": kind,
            "price": round(base_price[kind] * float(rng.lognormal(0, 0.3)), 2),
            "indicators": {
                "consumption_rate": round(float(rng.uniform(0.1, 1.0) if not vent else rng.uniform(0.05, 0.3)), 3),
                "reproduction_rate": round(float(rng.uniform(0.1, 1.0) if not vent else rng.uniform(0.05, 0.2)), 3),
                "durability": 1 if vent else int(rng.random() < 0.2),
                "danger_to_life": int(rng.integers(4, 6) if vent else rng.integers(1, 6)),
                "irreplaceability": int(rng.integers(4, 6) if vent else rng.integers(1, 5)),
            },
        })
    pos_w, pos_j, pos_k = rng.random((W, 2)), rng.random((J, 2)), rng.random((K, 2))
    population = rng.lognormal(np.log(50000), 0.6, size=K)  # served people per rescue centre
    attack = rng.uniform(0.002, 0.01)  # share of the population that is an active case at the peak
    curve = epidemic_curve(T, rng) * T  # mean 1
    need = np.array([per_case[m["kind"]] * float(rng.lognormal(0, 0.3)) for m in materials])  # per case per day
    demand = np.rint(population[:, None, None] * attack * need[None, :, None] * curve[None, None, :]
                     * rng.uniform(0.8, 1.2, size=(K, M, T)))  # [K, M, T]
    total = demand.sum(axis=(0, 2))  # [M]
    # Supply ~90 % of demand, minus what the centres hold at the start.
    initial_total = np.rint(demand[:, :, 0].sum(axis=0) * 1.0)
    supply_total = np.maximum(0.9 * total - initial_total, 0.0)
    site_share = rng.dirichlet(np.ones(W), size=M).T  # [W, M]
    # Production ramps up; everything arrives in periods 1..T-1 (last-period receipts could not be
    # delivered within the horizon), so supply + initial stock is ~90 % of demand.
    period_share = np.append(np.linspace(0.6, 1.4, T - 1), 0.0) if T > 1 else np.ones(1)
    period_share = (period_share / period_share.sum())[None, None, :]
    supply = np.floor(supply_total[None, :, None] * site_share[:, :, None] * period_share)  # [W, M, T]
    price_level = np.array([m["price"] for m in materials])
    price = np.round(price_level[None, :, None] * rng.uniform(0.9, 1.2, size=(W, M, 1))
                     * np.linspace(1.0, 1.1, T)[None, None, :], 2)  # dearer later
    centre_share = rng.dirichlet(np.ones(J) * 3, size=M).T  # [J, M]
    initial = np.rint(initial_total[None, :] * centre_share)
    safety = np.floor(initial * 0.05)
    flow_per_period = total / T
    capacity = np.ceil(initial.sum(axis=1) + 2.5 * flow_per_period.sum() / J * 3) + 100

    s_near = _nearest(pos_w, pos_j, 2)
    k_near = _nearest(pos_k, pos_j, 3)
    wid = [f"W{i + 1:03d}" for i in range(W)]
    jid = [f"J{i + 1:02d}" for i in range(J)]
    kid = [f"K{i + 1:03d}" for i in range(K)]
    mid = [m["id"] for m in materials]
    dc_at = _places(size, "Distribution centre", jid, pos_j)
    rc_at = _places(size, "Rescue centre", kid, pos_k)
    sc: dict[str, Any] = {
        "name": f"{size}-{seed}",
        "description": f"synthetic {size} scenario, seed {seed} (optimizer.generate)",
        "periods": T,
        "materials": materials,
        "supply_sites": [{"id": wid[w],
                          "supply": {mid[m]: supply[w, m].tolist() for m in range(M) if supply[w, m].any()},
                          "price": {mid[m]: price[w, m].tolist() for m in range(M)}} for w in range(W)],
        "distribution_centres": [{"id": jid[j], "capacity": float(capacity[j]),
                                  "initial": {mid[m]: float(initial[j, m]) for m in range(M)},
                                  "safety_stock": {mid[m]: float(safety[j, m]) for m in range(M) if safety[j, m]},
                                  **({"max_deliveries_per_period": max_deliveries} if max_deliveries else {}),
                                  **dc_at[j]}
                                 for j in range(J)],
        "rescue_centres": [{"id": kid[k], "demand": {mid[m]: demand[k, m].tolist() for m in range(M)}, **rc_at[k]}
                           for k in range(K)],
        "arcs": {"supply": [[wid[w], jid[j]] for w in range(W) for j in s_near[w]],
                 "delivery": [[jid[j], kid[k]] for k in range(K) for j in k_near[k]]},
    }
    if budget_fraction is not None:
        sc["budget"] = float(np.round(budget_fraction * float((supply * price).sum()), 2))
    if min_lot is not None:
        sc["min_lot"] = min_lot
    return sc
