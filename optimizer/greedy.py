"""A greedy urgency-first plan: the benchmark's baseline (and what a dispatcher without a solver does).

Period by period: (1) deliver from the stock held at the end of the previous period, most urgent
material first, each rescue centre from its serving centres with the most stock first, never below
safety stock, respecting the per-centre delivery limit; a delivery arc whose total falls below the
minimum lot is cancelled; (2) buy for the next period's demand of the rescue centres each centre
serves (shared equally among their serving centres), most urgent material first, cheapest supply
arc first, within supply, capacity, max inventory and the remaining budget. Whole units throughout.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optimizer.index import Index, numbers_of, structure_of
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
    t0 = time.perf_counter()
    run = _Greedy(sc, allowed)
    if not run.stock_rules_hold_at_start():
        return GreedyPlan(False, None, None, 0.0, time.perf_counter() - t0)
    for t in range(run.ix.T):
        run.deliver(t)
        run.purchase(t)
        if np.any(run.inv < run.n.safety - 1e-9):
            return GreedyPlan(False, None, None, 0.0, time.perf_counter() - t0)
    obj = float(np.einsum("kmt,m->", run.shortage, run.n.theta))
    return GreedyPlan(True, obj, run.shortage, run.spent, time.perf_counter() - t0, run.x_all, run.y_all)


class _Greedy:
    """The greedy plan's state over the periods: stock, what is left of supply, on hand and budget."""

    def __init__(self, sc: Scenario, allowed: np.ndarray | None):
        self.ix = ix = Index(structure_of(sc))
        self.n = n = numbers_of(sc)
        self.allowed = allowed
        M, T, J, K = ix.M, ix.T, ix.J, ix.K
        self.inv = n.initial.copy()  # [J, M] end of previous period
        self.order = np.argsort(-n.theta, kind="stable")  # most urgent material first
        self.budget = np.inf if n.budget is None else float(n.budget)
        self.supply_left = n.supply.copy()
        self.on_hand_left = n.on_hand.copy()  # [W, M] over the whole horizon
        self.shortage = np.zeros((K, M, T))
        self.servers = [ix.d_j[ix.d_k == k] for k in range(K)]
        self.arc_of = {(int(j), int(k)): d for d, (j, k) in enumerate(zip(ix.d_j, ix.d_k))}
        self.n_servers = np.array([max(len(s), 1) for s in self.servers])
        self.feeders = [np.flatnonzero(ix.s_j == j) for j in range(J)]
        self.min_lot = n.min_lot or 0.0
        self.spent = 0.0
        self.x_all = np.zeros((len(ix.s_w), M, T))
        self.y_all = np.zeros((len(ix.d_j), M, T))

    def stock_rules_hold_at_start(self) -> bool:
        n, inv = self.n, self.inv
        return not (np.any(inv < n.safety - 1e-9) or np.any(inv > n.max_inventory + 1e-9)
                    or np.any(inv.sum(1) > n.capacity + 1e-9))

    def deliver(self, t: int) -> None:
        """Deliveries of period t from the previous period's stock above safety stock."""
        ix, n = self.ix, self.n
        usable = np.maximum(self.inv - n.safety, 0.0)
        y = np.zeros((len(ix.d_j), ix.M))
        used_arcs = np.zeros(ix.J, dtype=int)
        opened = np.zeros(len(ix.d_j), dtype=bool)
        for m in self.order:
            for k in np.argsort(-n.demand[:, m, t]):
                self._serve(t, m, k, usable, y, used_arcs, opened)
        if self.min_lot > 0:  # an arc below the minimum lot is cancelled
            small = opened & (y.sum(axis=1) < self.min_lot)
            for d in np.flatnonzero(small):
                usable[ix.d_j[d]] += y[d]
                y[d] = 0
        self.y_all[:, :, t] = y
        out = np.zeros((ix.J, ix.M))
        np.add.at(out, ix.d_j, y)
        got = np.zeros((ix.K, ix.M))
        np.add.at(got, ix.d_k, y)
        self.shortage[:, :, t] = np.maximum(n.demand[:, :, t] - got, 0.0)
        self.inv = self.inv - out

    def _serve(self, t: int, m: int, k: int, usable: np.ndarray, y: np.ndarray, used_arcs: np.ndarray,
               opened: np.ndarray) -> None:
        """Rescue centre k's demand of material m: its serving centres with the most stock first."""
        n = self.n
        need = n.demand[k, m, t]
        if need <= 0:
            return
        for j in sorted(self.servers[k], key=lambda j: -usable[j, m]):
            d = self.arc_of[(int(j), int(k))]
            if self.allowed is not None and not self.allowed[d, t]:
                continue
            if not opened[d] and n.max_deliveries[j] >= 0 and used_arcs[j] >= n.max_deliveries[j]:
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

    def _target(self, t: int) -> np.ndarray:
        """[J, M]: what each centre buys for in period t: next period's demand of the rescue centres it
        serves (of the arcs allowed then), shared equally among their serving centres."""
        ix, n = self.ix, self.n
        target = np.zeros((ix.J, ix.M))
        if t + 1 >= ix.T:
            return target
        if self.allowed is not None:
            open_next = self.allowed[:, t + 1]
            count = np.zeros(ix.K)
            np.add.at(count, ix.d_k[open_next], 1.0)
            share = n.demand[:, :, t + 1] / np.maximum(count, 1.0)[:, None]
            np.add.at(target, ix.d_j[open_next], share[ix.d_k[open_next]])
        else:
            share = n.demand[:, :, t + 1] / self.n_servers[:, None]
            np.add.at(target, ix.d_j, share[ix.d_k])
        return target

    def purchase(self, t: int) -> None:
        """Purchases of period t: most urgent material first, cheapest supply arc first, within supply,
        on hand, capacity, max inventory and the remaining budget."""
        target = self._target(t)
        held = self.inv.sum(axis=1)  # all materials at each centre, kept up to date below
        for m in self.order:
            for j in range(self.ix.J):
                want = np.floor(target[j, m] + self.n.safety[j, m] - self.inv[j, m])
                if want > 0:
                    self._buy(t, m, j, want, held)

    def _buy(self, t: int, m: int, j: int, want: float, held: np.ndarray) -> None:
        ix, n = self.ix, self.n
        fj = self.feeders[j]
        for s in fj[np.argsort(n.price[ix.s_w[fj], m, t], kind="stable")]:
            w = ix.s_w[s]
            price = n.price[w, m, t]
            room = min(n.capacity[j] - held[j], n.max_inventory[j, m] - self.inv[j, m])
            afford = np.inf if price <= 0 else np.floor(self.budget / price)
            q = float(np.floor(max(min(want, self.supply_left[w, m, t], self.on_hand_left[w, m], room, afford), 0.0)))
            if q <= 0:
                continue
            self.supply_left[w, m, t] -= q
            self.x_all[s, m, t] += q
            self.on_hand_left[w, m] -= q
            self.inv[j, m] += q
            held[j] += q
            self.budget -= q * price
            self.spent += q * price
            want -= q
            if want <= 0:
                break
