"""A scenario as numpy arrays: the index sets (structure) and the numbers, split so a model can be
compiled once per structure and re-solved with new numbers.

Flat layouts used by the model (row-major):
x[s, m, t] supply arc s = (w, j);   y[d, m, t] delivery arc d = (j, k);   I[j, m, t];
b[d, t] delivery arc used;          a[s, t] supply arc used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optimizer.scenario import Scenario, ScenarioError
from optimizer.urgency import urgency


@dataclass(frozen=True)
class Structure:
    """Everything that changes the shape of the model. Two scenarios with equal structures can share
    one compiled problem."""

    materials: tuple[str, ...]
    supply_sites: tuple[str, ...]
    distribution_centres: tuple[str, ...]
    rescue_centres: tuple[str, ...]
    periods: int
    supply_arcs: tuple[tuple[str, str], ...]
    delivery_arcs: tuple[tuple[str, str], ...]
    has_budget: bool
    has_min_lot: bool
    has_on_hand: bool
    limited_centres: tuple[str, ...]  # centres with max_deliveries_per_period

    def differences(self, other: "Structure") -> list[str]:
        out = []
        for name in self.__dataclass_fields__:
            if getattr(self, name) != getattr(other, name):
                out.append(name)
        return out


def structure_of(sc: Scenario) -> Structure:
    return Structure(
        materials=tuple(sc.material_ids),
        supply_sites=tuple(w.id for w in sc.supply_sites),
        distribution_centres=tuple(j.id for j in sc.distribution_centres),
        rescue_centres=tuple(k.id for k in sc.rescue_centres),
        periods=sc.periods,
        supply_arcs=tuple(sc.supply_arcs()),
        delivery_arcs=tuple(sc.delivery_arcs()),
        has_budget=sc.budget is not None,
        has_min_lot=sc.min_lot is not None,
        has_on_hand=any(w.on_hand is not None for w in sc.supply_sites),
        limited_centres=tuple(j.id for j in sc.distribution_centres if j.max_deliveries_per_period is not None),
    )


@dataclass(frozen=True)
class Numbers:
    """The numbers of a scenario as arrays (units of each material; prices in currency units)."""

    supply: np.ndarray  # [W, M, T]
    on_hand: np.ndarray  # [W, M]: all periods together ship at most this (total supply where none given)
    price: np.ndarray  # [W, M, T]
    demand: np.ndarray  # [K, M, T]
    initial: np.ndarray  # [J, M]
    safety: np.ndarray  # [J, M]
    max_inventory: np.ndarray  # [J, M]
    capacity: np.ndarray  # [J]
    max_deliveries: np.ndarray  # [J] (-1 = unlimited)
    budget: float | None
    min_lot: float | None
    theta: np.ndarray  # [M]


def numbers_of(sc: Scenario) -> Numbers:
    mids = sc.material_ids
    urg = urgency(sc.materials, sc.theta)
    W, M, T = len(sc.supply_sites), len(mids), sc.periods  # shapes kept when there is no supply site
    return Numbers(
        supply=np.array([[w.supply[m] for m in mids] for w in sc.supply_sites], dtype=float).reshape(W, M, T),
        on_hand=np.array([[sum(w.supply[m]) if w.on_hand is None else w.on_hand[m] for m in mids]
                          for w in sc.supply_sites], dtype=float).reshape(W, M),
        price=np.array([[w.price[m] for m in mids] for w in sc.supply_sites], dtype=float).reshape(W, M, T),
        demand=np.array([[k.demand[m] for m in mids] for k in sc.rescue_centres], dtype=float),
        initial=np.array([[j.initial[m] for m in mids] for j in sc.distribution_centres], dtype=float),
        safety=np.array([[j.safety_stock[m] for m in mids] for j in sc.distribution_centres], dtype=float),
        max_inventory=np.array([[min(j.max_inventory[m], j.capacity) for m in mids] for j in sc.distribution_centres],
                               dtype=float),
        capacity=np.array([j.capacity for j in sc.distribution_centres], dtype=float),
        max_deliveries=np.array([-1 if j.max_deliveries_per_period is None else j.max_deliveries_per_period
                                 for j in sc.distribution_centres], dtype=float),
        budget=sc.budget, min_lot=sc.min_lot,
        theta=np.array([urg.coefficients[m] for m in mids], dtype=float),
    )


class Index:
    """Integer index arrays and the constant sparse matrices of one structure (no Python loops over
    scalar constraints: every matrix is built from numpy index arrays)."""

    def __init__(self, st: Structure):
        self.st = st
        M, T = len(st.materials), st.periods
        W, J, K = len(st.supply_sites), len(st.distribution_centres), len(st.rescue_centres)
        self.M, self.T, self.W, self.J, self.K = M, T, W, J, K
        wpos = {w: i for i, w in enumerate(st.supply_sites)}
        jpos = {j: i for i, j in enumerate(st.distribution_centres)}
        kpos = {k: i for i, k in enumerate(st.rescue_centres)}
        self.s_w = np.array([wpos[w] for w, _ in st.supply_arcs], dtype=np.int64)
        self.s_j = np.array([jpos[j] for _, j in st.supply_arcs], dtype=np.int64)
        self.d_j = np.array([jpos[j] for j, _ in st.delivery_arcs], dtype=np.int64)
        self.d_k = np.array([kpos[k] for _, k in st.delivery_arcs], dtype=np.int64)
        self.ns, self.nd = len(self.s_w), len(self.d_j)
        self.n_x, self.n_y, self.n_i = self.ns * M * T, self.nd * M * T, J * M * T
        self.limited = np.array([jpos[j] for j in st.limited_centres], dtype=np.int64)

        mt = M * T
        m_of = np.repeat(np.arange(M), T)  # within one (arc) block of M*T
        t_of = np.tile(np.arange(T), M)
        # x entries: arc s, material m, period t
        xs = np.repeat(np.arange(self.ns), mt)
        xm, xt = np.tile(m_of, self.ns), np.tile(t_of, self.ns)
        ys = np.repeat(np.arange(self.nd), mt)
        ym, yt = np.tile(m_of, self.nd), np.tile(t_of, self.nd)
        self.x_w, self.x_j, self.x_m, self.x_t = self.s_w[xs], self.s_j[xs], xm, xt
        self.y_j, self.y_k, self.y_m, self.y_t = self.d_j[ys], self.d_k[ys], ym, yt
        self.x_arc, self.y_arc = xs, ys

        def csr(rows, cols, shape, vals=None):
            vals = np.ones(len(rows)) if vals is None else vals
            return sp.csr_matrix((vals, (rows, cols)), shape=shape)

        ones_x, ones_y = np.arange(self.n_x), np.arange(self.n_y)
        # sum over j of x[w, j, m, t]  (rows w, m, t)
        self.supply_rows = csr((self.x_w * M + xm) * T + xt, ones_x, (W * mt, self.n_x))
        # sum over j and t of x[w, j, m, t]  (rows w, m): what leaves a site over the whole horizon
        self.on_hand_rows = csr(self.x_w * M + xm, ones_x, (W * M, self.n_x))
        # receipts of centre j: sum over w of x  (rows j, m, t)
        self.receipts = csr((self.x_j * M + xm) * T + xt, ones_x, (J * mt, self.n_x))
        # issues of centre j: sum over k of y  (rows j, m, t)
        self.issues = csr((self.y_j * M + ym) * T + yt, ones_y, (J * mt, self.n_y))
        # deliveries to rescue centre k: sum over j of y  (rows k, m, t)
        self.delivered = csr((self.y_k * M + ym) * T + yt, ones_y, (K * mt, self.n_y))
        # previous period's inventory: I[j, m, t-1] for t >= 1
        i_all = np.arange(self.n_i)
        later = (i_all % T) > 0
        self.lag = csr(i_all[later], i_all[later] - 1, (self.n_i, self.n_i))
        # initial inventory enters at t = 0
        first = i_all[(i_all % T) == 0]
        self.at_start = csr(first, first // T, (self.n_i, J * M))
        # all materials at centre j in period t
        self.stock_rows = csr((i_all // mt) * T + (i_all % T), i_all, (J * T, self.n_i))
        # per arc and period, all materials
        self.arc_y = csr(ys * T + yt, ones_y, (self.nd * T, self.n_y))
        self.arc_x = csr(xs * T + xt, ones_x, (self.ns * T, self.n_x))
        # deliveries counted per limited centre and period: rows (l, t), cols b[d, t]
        lpos = {int(j): i for i, j in enumerate(self.limited)}
        d_l = np.array([lpos.get(int(j), -1) for j in self.d_j], dtype=np.int64)
        b_d = np.repeat(np.arange(self.nd), T)
        b_t = np.tile(np.arange(T), self.nd)
        keep = d_l[b_d] >= 0
        self.deliveries_per_centre = csr(d_l[b_d][keep] * T + b_t[keep], (b_d * T + b_t)[keep],
                                         (len(self.limited) * T, self.nd * T))

    # --- numbers in the flat layouts ---------------------------------------------------------------

    def supply_vec(self, n: Numbers) -> np.ndarray:
        return n.supply.reshape(-1)

    def demand_vec(self, n: Numbers) -> np.ndarray:
        return n.demand.reshape(-1)

    def per_period(self, a: np.ndarray) -> np.ndarray:
        """[J, M] -> flat [J, M, T]."""
        return np.repeat(a.reshape(-1), self.T)

    def price_x(self, n: Numbers) -> np.ndarray:
        return n.price[self.x_w, self.x_m, self.x_t]

    def theta_y(self, n: Numbers) -> np.ndarray:
        return n.theta[self.y_m]

    def theta_demand(self, n: Numbers) -> float:
        return float(np.einsum("kmt,m->", n.demand, n.theta))

    def delivery_bound(self, n: Numbers) -> np.ndarray:
        """Tightest simple bound U[d, t] on sum_m y[d, m, t]: the rescue centre's total demand in t,
        and what the centre can hold (its initial stock in period 1, its capacity later)."""
        dem = n.demand.sum(axis=1)[self.d_k]  # [nd, T]
        held = np.repeat(n.capacity[self.d_j][:, None], self.T, axis=1)
        held[:, 0] = n.initial.sum(axis=1)[self.d_j]
        return np.minimum(dem, held).reshape(-1)

    def material_delivery_bound(self, n: Numbers) -> np.ndarray:
        """Tightest simple bound on each y[d, m, t] (the per-material big-M of the arc binary): the rescue
        centre's demand of m in t, the arc's bound U[d, t], and what centre j can hold of m (its initial
        stock in period 1, its max inventory later)."""
        dem = n.demand[self.y_k, self.y_m, self.y_t]
        held = np.where(self.y_t == 0, n.initial[self.y_j, self.y_m], n.max_inventory[self.y_j, self.y_m])
        arc = self.delivery_bound(n)[self.y_arc * self.T + self.y_t]
        return np.minimum(np.minimum(dem, held), arc)

    def supply_bound(self, n: Numbers) -> np.ndarray:
        """Tightest simple bound on sum_m x[s, m, t]: the site's supply in t (at most what it has on
        hand) and the centre's capacity."""
        sup = np.minimum(n.supply, n.on_hand[:, :, None]).sum(axis=1)[self.s_w]  # [ns, T]
        cap = n.capacity[self.s_j][:, None]
        return np.minimum(sup, cap).reshape(-1)

    def index_limits(self, per_limited: np.ndarray) -> dict[int, np.ndarray]:
        """centre position -> its per-period delivery limit, from the [limited, T] parameter layout."""
        return {int(j): per_limited[i] for i, j in enumerate(self.limited)}

    def max_deliveries_vec(self, n: Numbers) -> np.ndarray:
        return np.repeat(n.max_deliveries[self.limited], self.T)


def check_same_structure(expected: Structure, sc: Scenario) -> Structure:
    got = structure_of(sc)
    if got != expected:
        raise ScenarioError(f"scenario {sc.name!r} has a different structure than the compiled model "
                            f"(differs in: {', '.join(expected.differences(got))}); build a new Planner")
    return got
