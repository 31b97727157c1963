"""A greedy urgency-first plan: the benchmark's baseline (and what a dispatcher without a solver does).

Period by period: (1) deliver from the stock held at the end of the previous period, most urgent
material first, each rescue centre from its serving centres with the most stock first, never below
safety stock, respecting the per-centre delivery limit; a delivery arc whose total falls below the
minimum lot is cancelled; (2) buy for the next period's demand of the rescue centres each centre
serves (shared equally among their serving centres), most urgent material first, cheapest supply
arc first, within supply, capacity, max inventory and the remaining budget. Whole units throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.index import Index, Numbers, numbers_of, structure_of
from optimizer.scenario import Scenario


@dataclass(frozen=True)
class GreedyPlan:
    feasible: bool  # False when even the greedy rules cannot keep stock rules (e.g. safety above initial)
    objective: float | None  # sum theta * shortage
    shortage: np.ndarray | None  # [K, M, T]
    spent: float
    seconds: float
    shipped: np.ndarray | None = None  # x[s, m, t] units on supply arc s (Index order)
    delivered: np.ndarray | None = None  # y[d, m, t] units on delivery arc d (Index order)


def greedy_plan(sc: Scenario, allowed: np.ndarray | None = None) -> GreedyPlan:
    """The greedy plan; ``allowed`` ([delivery arcs, periods] booleans) restricts deliveries to those
    arcs (the anytime planner passes the fleet LP's choice) and buys for them."""
    import time

    t0 = time.perf_counter()
    st = structure_of(sc)
    ix = Index(st)
    n: Numbers = numbers_of(sc)
    M, T, J, K = ix.M, ix.T, ix.J, ix.K
    inv = n.initial.copy()  # [J, M] end of previous period
    if np.any(inv < n.safety - 1e-9) or np.any(inv > n.max_inventory + 1e-9) or np.any(inv.sum(1) > n.capacity + 1e-9):
        return GreedyPlan(False, None, None, 0.0, time.perf_counter() - t0)
    order = np.argsort(-n.theta, kind="stable")
    budget = np.inf if n.budget is None else float(n.budget)
    supply_left = n.supply.copy()
    on_hand_left = n.on_hand.copy()  # [W, M] over the whole horizon
    shortage = np.zeros((K, M, T))
    servers = [ix.d_j[ix.d_k == k] for k in range(K)]
    arc_of = {(int(j), int(k)): d for d, (j, k) in enumerate(zip(ix.d_j, ix.d_k))}
    n_servers = np.array([max(len(s), 1) for s in servers])
    feeders = [np.flatnonzero(ix.s_j == j) for j in range(J)]
    min_lot = n.min_lot or 0.0
    spent = 0.0
    x_all = np.zeros((len(ix.s_w), M, T))
    y_all = np.zeros((len(ix.d_j), M, T))
    for t in range(T):
        # (1) deliveries from the previous period's stock
        usable = np.maximum(inv - n.safety, 0.0)
        y = np.zeros((len(ix.d_j), M))
        used_arcs = np.zeros(J, dtype=int)
        opened = np.zeros(len(ix.d_j), dtype=bool)
        for m in order:
            for k in np.argsort(-n.demand[:, m, t]):
                need = n.demand[k, m, t]
                if need <= 0:
                    continue
                for j in sorted(servers[k], key=lambda j: -usable[j, m]):
                    d = arc_of[(int(j), int(k))]
                    if allowed is not None and not allowed[d, t]:
                        continue
                    if not opened[d]:
                        if n.max_deliveries[j] >= 0 and used_arcs[j] >= n.max_deliveries[j]:
                            continue
                    q = float(np.floor(min(need, usable[j, m])))
                    if q <= 0:
                        continue
                    if not opened[d]:
                        opened[d] = True
                        used_arcs[j] += 1
                    y[d, m] += q
                    usable[j, m] -= q
                    need -= q
                    if need <= 0:
                        break
        if min_lot > 0:
            small = opened & (y.sum(axis=1) < min_lot)
            for d in np.flatnonzero(small):
                usable[ix.d_j[d]] += y[d]
                y[d] = 0
        y_all[:, :, t] = y
        out = np.zeros((J, M))
        np.add.at(out, ix.d_j, y)
        got = np.zeros((K, M))
        np.add.at(got, ix.d_k, y)
        shortage[:, :, t] = np.maximum(n.demand[:, :, t] - got, 0.0)
        inv = inv - out
        # (2) purchases for next period's demand
        if t + 1 < T and allowed is not None:  # next period's demand of the arcs allowed then
            target = np.zeros((J, M))
            open_next = allowed[:, t + 1]
            count = np.zeros(K)
            np.add.at(count, ix.d_k[open_next], 1.0)
            share = n.demand[:, :, t + 1] / np.maximum(count, 1.0)[:, None]
            np.add.at(target, ix.d_j[open_next], share[ix.d_k[open_next]])
        elif t + 1 < T:
            target = np.zeros((J, M))
            share = n.demand[:, :, t + 1] / n_servers[:, None]
            np.add.at(target, ix.d_j, share[ix.d_k])
        else:
            target = np.zeros((J, M))
        held = inv.sum(axis=1)  # all materials at each centre, kept up to date below
        for m in order:
            for j in range(J):
                want = np.floor(target[j, m] + n.safety[j, m] - inv[j, m])
                if want <= 0:
                    continue
                fj = feeders[j]
                for s in fj[np.argsort(n.price[ix.s_w[fj], m, t], kind="stable")]:
                    w = ix.s_w[s]
                    price = n.price[w, m, t]
                    room = min(n.capacity[j] - held[j], n.max_inventory[j, m] - inv[j, m])
                    afford = np.inf if price <= 0 else np.floor(budget / price)
                    q = float(np.floor(max(min(want, supply_left[w, m, t], on_hand_left[w, m], room, afford), 0.0)))
                    if q <= 0:
                        continue
                    supply_left[w, m, t] -= q
                    x_all[s, m, t] += q
                    on_hand_left[w, m] -= q
                    inv[j, m] += q
                    held[j] += q
                    budget -= q * price
                    spent += q * price
                    want -= q
                    if want <= 0:
                        break
        if np.any(inv < n.safety - 1e-9):
            return GreedyPlan(False, None, None, 0.0, time.perf_counter() - t0)
    obj = float(np.einsum("kmt,m->", shortage, n.theta))
    return GreedyPlan(True, obj, shortage, spent, time.perf_counter() - t0, x_all, y_all)
