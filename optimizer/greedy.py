"""A greedy urgency-first plan: the benchmark's baseline (and what a dispatcher without a solver does).

Period by period: (1) deliver from the stock held at the end of the previous period, most urgent
material first, each rescue centre from its serving centres with the most stock first, never below
safety stock, respecting the per-centre delivery limit; a delivery arc whose total falls below the
minimum lot is cancelled; (2) buy for the next period's demand of the rescue centres each centre
serves (shared equally among their serving centres), most urgent material first, cheapest supply
arc first, within supply, capacity, max inventory and the remaining budget. Whole units throughout.
"""
from __future__ import annotations

import math
import time
import dataclasses
from dataclasses import dataclass

import numpy as np

from optimizer.index import Index, numbers_of, structure_of
from optimizer.scenario import Scenario


#: Buying ahead, each serving centre buys for this multiple of its equal share of a rescue centre's
#: future demand: a centre with supply nearby covers for one without (what it cannot deliver stays in
#: stock). Sum of the per-material greedy plans against the sum of their optima, province seeds 1/2/3:
#: 1.0 -> 1.090 / 1.170 / 1.234, 1.5 -> 1.053 / 1.116 / 1.182, 2.0 -> 1.057 / 1.114 / 1.198.
LOOKAHEAD_SHARE = 1.5


@dataclass(frozen=True)
class GreedyPlan:
    feasible: bool  # False when even the greedy rules cannot keep stock rules (e.g. safety above initial)
    objective: float | None  # sum theta * shortage
    shortage: np.ndarray | None  # [K, M, T]
    spent: float
    seconds: float
    shipped: np.ndarray | None = None  # x[s, m, t] units on supply arc s (Index order)
    delivered: np.ndarray | None = None  # y[d, m, t] units on delivery arc d (Index order)


def greedy_plan(sc: Scenario, allowed: np.ndarray | None = None, lookahead: bool = False,
                budgets: np.ndarray | None = None, caps: np.ndarray | None = None) -> GreedyPlan:
    """The greedy plan; ``allowed`` ([delivery arcs, periods] booleans) restricts deliveries to those
    arcs (the anytime planner passes the fleet LP's choice) and buys for them.

    ``lookahead``: each period buys for the demand of EVERY later period, not only the next one. Supply
    is a flow that lapses when unused, and demand grows during an epidemic, so buying for the next
    period only leaves early supply unused: at province size without limits the myopic plan's
    shortage was 2.4x the optimum's, material by material.

    ``budgets`` ([M], money): each material spends at most its share (and all together at most the
    budget). Buying ahead, the most urgent materials would otherwise spend the whole budget early
    (province: 65 % from the bound with one budget for all, against 2-23 % per material with shares).

    ``caps`` ([J, M] units): each material's stock at each centre stays within its cap (the
    decomposition's capacity shares: with them and ``budgets`` each material's plan is the one it gets
    on its own single-material scenario)."""
    t0 = time.perf_counter()
    run = _Greedy(sc, allowed, lookahead, budgets, caps)
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

    def __init__(self, sc: Scenario, allowed: np.ndarray | None, lookahead: bool = False,
                 budgets: np.ndarray | None = None, caps: np.ndarray | None = None):
        self.ix = ix = Index(structure_of(sc))
        self.n = n = numbers_of(sc)
        if caps is not None:
            self.n = n = dataclasses.replace(n, max_inventory=np.minimum(n.max_inventory, caps))
        self.allowed = allowed
        self.lookahead = lookahead
        self.budget_left = [math.inf] * ix.M if budgets is None else [float(b) for b in budgets]
        M, T, J, K = ix.M, ix.T, ix.J, ix.K
        self.inv = n.initial.copy()  # [J, M] end of previous period
        self.order = np.argsort(-n.theta, kind="stable")  # most urgent material first
        self.budget = np.inf if n.budget is None else float(n.budget)
        self.supply_left = n.supply.copy()
        self.on_hand_left = n.on_hand.copy()  # [W, M] over the whole horizon
        self.shortage = np.zeros((K, M, T))
        self.servers = [ix.d_j[ix.d_k == k] for k in range(K)]
        self.server_list = [s.tolist() for s in self.servers]
        self.s_w = ix.s_w.tolist()
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
        """Deliveries of period t from the previous period's stock above safety stock.

        The inner loops run on Python lists (one material's column at a time): per-element numpy
        indexing made this the bulk of the first plan's time at province size (about 4 of 7 s)."""
        ix, n = self.ix, self.n
        usable = np.maximum(self.inv - n.safety, 0.0)
        y = np.zeros((len(ix.d_j), ix.M))
        fleet = _Fleet(n.max_deliveries.tolist(), len(ix.d_j),
                       None if self.allowed is None else self.allowed[:, t].tolist())
        for m in self.order:
            column = usable[:, m].tolist()
            demand = n.demand[:, m, t]
            for k in np.argsort(-demand).tolist():
                need = float(demand[k])
                if need > 0:
                    for d, q in self._serve(k, need, column, fleet):
                        y[d, m] += q
            usable[:, m] = column
        if self.min_lot > 0:  # an arc below the minimum lot is cancelled
            small = np.array(fleet.opened, dtype=bool) & (y.sum(axis=1) < self.min_lot)
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

    def _serve(self, k: int, need: float, usable: list[float], fleet: "_Fleet") -> list[tuple[int, float]]:
        """Rescue centre k's ``need`` of one material: its serving centres with the most stock first
        (``usable``: that material's stock per centre, reduced in place). Returns (arc, units)."""
        out = []
        for j in sorted(self.server_list[k], key=lambda j: -usable[j]):
            d = self.arc_of[(j, k)]
            if not fleet.may_use(d, j):
                continue
            q = float(math.floor(min(need, usable[j])))
            if q <= 0:
                continue
            fleet.open(d, j)
            out.append((d, q))
            usable[j] -= q
            need -= q
            if need <= 0:
                break
        return out

    def _target(self, t: int) -> np.ndarray:
        """[J, M]: what each centre buys for in period t: next period's demand of the rescue centres it
        serves (of the arcs allowed then), shared equally among their serving centres; with
        ``lookahead`` the demand of every later period (all delivery arcs)."""
        ix, n = self.ix, self.n
        target = np.zeros((ix.J, ix.M))
        if t + 1 >= ix.T:
            return target
        if self.lookahead and self.allowed is None:
            share = n.demand[:, :, t + 1:].sum(axis=2) * LOOKAHEAD_SHARE / self.n_servers[:, None]
            np.add.at(target, ix.d_j, share[ix.d_k])
        elif self.allowed is not None:
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
        on hand, capacity, max inventory and the remaining budget. One material's columns at a time
        as Python lists (a centre's purchase changes only its own stock of the material, so every
        centre's want can be taken before the loop)."""
        n = self.n
        target = self._target(t)
        held = self.inv.sum(axis=1).tolist()  # all materials at each centre, kept up to date below
        for m in self.order:
            want = np.floor(target[:, m] + n.safety[:, m] - self.inv[:, m])
            cols = _Columns(inv=self.inv[:, m].tolist(), supply=self.supply_left[:, m, t].tolist(),
                            on_hand=self.on_hand_left[:, m].tolist(), price=n.price[:, m, t].tolist(),
                            max_inventory=n.max_inventory[:, m].tolist(), capacity=n.capacity.tolist(), held=held)
            for j in np.flatnonzero(want > 0).tolist():
                self._buy(t, m, j, float(want[j]), cols)
            self.inv[:, m], self.supply_left[:, m, t], self.on_hand_left[:, m] = cols.inv, cols.supply, cols.on_hand

    def _buy(self, t: int, m: int, j: int, want: float, c: "_Columns") -> None:
        ix = self.ix
        fj = self.feeders[j]
        for s in fj[np.argsort(self.n.price[ix.s_w[fj], m, t], kind="stable")].tolist():
            w = self.s_w[s]
            price = c.price[w]
            room = min(c.capacity[j] - c.held[j], c.max_inventory[j] - c.inv[j])
            afford = math.inf if price <= 0 else float(np.floor(min(self.budget, self.budget_left[m]) / price))
            q = float(math.floor(max(min(want, c.supply[w], c.on_hand[w], room, afford), 0.0)))
            if q <= 0:
                continue
            c.supply[w] -= q
            self.x_all[s, m, t] += q
            c.on_hand[w] -= q
            c.inv[j] += q
            c.held[j] += q
            self.budget -= q * price
            self.budget_left[m] -= q * price
            self.spent += q * price
            want -= q
            if want <= 0:
                break


@dataclass
class _Columns:
    """One material's purchase state in period t as Python lists (per centre: inv, max_inventory,
    capacity, held = all materials; per supply site: supply, on_hand, price)."""

    inv: list[float]
    supply: list[float]
    on_hand: list[float]
    price: list[float]
    max_inventory: list[float]
    capacity: list[float]
    held: list[float]


class _Fleet:
    """One period's delivery arcs in use: each centre opens at most its limit (-1: no limit), and
    only allowed arcs (None: all)."""

    def __init__(self, limits: list[int], arcs: int, allowed: list[bool] | None):
        self.limits, self.allowed = limits, allowed
        self.used = [0] * len(limits)
        self.opened = [False] * arcs

    def may_use(self, d: int, j: int) -> bool:
        if self.allowed is not None and not self.allowed[d]:
            return False
        return self.opened[d] or self.limits[j] < 0 or self.used[j] < self.limits[j]

    def open(self, d: int, j: int) -> None:
        if not self.opened[d]:
            self.opened[d] = True
            self.used[j] += 1
