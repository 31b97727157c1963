"""Fast proven lower bounds on sum theta x shortage that hold at every size, with delivery limits.

The aggregate bound (``optimizer.decompose.aggregate_relaxation``) drops the network and the delivery
limits: with a fleet limit (a centre serves at most F rescue centres per period) it is far too low
(city seed 1, F = 2: 1.68 M against an LP bound of 10.1 M). The FLEET bound keeps exactly what makes
those scenarios hard, and drops the stock flow instead:

    max  sum_{d,t} f[d,t]                         (theta-weighted units delivered on arc d in t)
    s.t. f[d,t] <= v[d,t] z[d,t]                  (v: the most an arc can carry in value, below)
         sum_{d into k} f[d,t] <= value(k, t)       (a rescue centre needs no more than its demand)
         sum_{d out of j} z[d,t] <= F_j             (the fleet limit of centre j)
         0 <= z <= 1

v[d,t] = theta-weighted value of the U[d,t] most urgent units of rescue centre k's demand in t, with
U[d,t] the most an arc can carry (k's demand in t; what centre j can hold: its initial stock in
period 1, its capacity later). Every plan gives a feasible point (z = arc used, f = value delivered),
so theta.D - optimum is a lower bound on the shortage objective. It is a small LP (2 x arcs x periods
columns: 33,600 at province size), solved by HiGHS in well under a second.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optimizer.index import Index, numbers_of, structure_of
from optimizer.scenario import Scenario


def arc_values(ix: Index, demand: np.ndarray, theta: np.ndarray, carry: np.ndarray) -> np.ndarray:
    """v[d, t]: value of the ``carry[d, t]`` most urgent units of the demand of arc d's rescue centre."""
    order = np.argsort(-theta, kind="stable")
    dem = demand[ix.d_k][:, order, :]  # [nd, M, T] most urgent first
    before = np.cumsum(dem, axis=1) - dem  # units of more urgent materials
    take = np.clip(carry[:, None, :] - before, 0.0, dem)
    return np.einsum("dmt,m->dt", take, theta[order])


def fleet_bound(sc: Scenario) -> float:
    """Lower bound on sum theta x shortage with the delivery limits (see the module docstring)."""
    return fleet_relaxation(sc)[0]


def fleet_relaxation(sc: Scenario) -> tuple[float, np.ndarray | None]:
    """(lower bound, value the relaxation sends on each delivery arc and period f[d, t]; None if unsolved).

    Lower bound on sum theta x shortage that respects the per-centre delivery limits (see above).

    Without any delivery limit it is only the demand-and-carry bound (usually weak); combine it with
    the aggregate bound by taking the larger of the two (``best_quick_bound``).
    """
    from scipy.optimize import linprog

    ix = Index(structure_of(sc))
    n = numbers_of(sc)
    T, nd = ix.T, ix.nd
    total = float(np.einsum("kmt,m->", n.demand, n.theta))
    if nd == 0:
        return total, None
    carry = ix.delivery_bound(n).reshape(nd, T)
    v = arc_values(ix, n.demand, n.theta, carry)  # [nd, T]
    value_k = np.einsum("kmt,m->kt", n.demand, n.theta)  # [K, T]
    nv = nd * T
    dt = np.arange(nv)
    d_of, t_of = dt // T, dt % T
    # columns: f (nv), z (nv)
    link = sp.hstack([sp.identity(nv), -sp.diags(v.reshape(-1))])
    by_k = sp.csr_matrix((np.ones(nv), (ix.d_k[d_of] * T + t_of, dt)), shape=(ix.K * T, nv))
    rows = [link, sp.hstack([by_k, sp.csr_matrix((ix.K * T, nv))])]
    rhs = [np.zeros(nv), value_k.reshape(-1)]
    limited = {int(j): i for i, j in enumerate(ix.limited)}
    if limited:
        lim_of = np.array([limited.get(int(j), -1) for j in ix.d_j[d_of]])
        keep = lim_of >= 0
        by_j = sp.csr_matrix((np.ones(int(keep.sum())), (lim_of[keep] * T + t_of[keep], dt[keep])),
                             shape=(len(limited) * T, nv))
        rows.append(sp.hstack([sp.csr_matrix((len(limited) * T, nv)), by_j]))
        rhs.append(np.repeat(n.max_deliveries[ix.limited], T))
    a_ub = sp.vstack(rows).tocsr()
    res = linprog(np.concatenate([-np.ones(nv), np.zeros(nv)]), A_ub=a_ub, b_ub=np.concatenate(rhs),
                  bounds=[(0, None)] * nv + [(0, 1)] * nv, method="highs")
    if res.status != 0:
        return 0.0, None  # no bound rather than a wrong one
    # the optimum of the LP; subtract a hair for floating point
    best = -float(res.fun)
    return max(total - best - 1e-7 * max(1.0, total), 0.0), res.x[:nv].reshape(nd, T)


def best_quick_bound(sc: Scenario) -> tuple[float, dict[str, float], np.ndarray | None]:
    """The larger of the aggregate bound and the fleet bound (both for the record), and the fleet
    LP's value per delivery arc and period (None without delivery limits or minimum lot, where the
    fleet bound is not computed: it is only the weak demand-and-carry bound there)."""
    from optimizer.decompose import aggregate_bound

    agg = aggregate_bound(sc)
    if not (sc.min_lot is not None or any(j.max_deliveries_per_period is not None for j in sc.distribution_centres)):
        return agg, {"aggregate_bound": agg}, None
    fleet, flow_value = fleet_relaxation(sc)
    return max(agg, fleet), {"aggregate_bound": agg, "fleet_bound": fleet}, flow_value

