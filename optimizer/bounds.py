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

from dataclasses import dataclass

import highspy as hp
import numpy as np
import scipy.sparse as sp

from optimizer.decompose import aggregate_bound
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
    from scipy.optimize import linprog  # lazy: scipy.optimize costs ~0.9 s to import; only this bound needs it

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

    agg = aggregate_bound(sc)
    if not (sc.min_lot is not None or any(j.max_deliveries_per_period is not None for j in sc.distribution_centres)):
        return agg, {"aggregate_bound": agg}, None
    fleet, flow_value = fleet_relaxation(sc)
    return max(agg, fleet), {"aggregate_bound": agg, "fleet_bound": fleet}, flow_value



def stock_fleet_relaxation(sc: Scenario, time_limit_s: float = 60.0, merge_sites: bool = False,
                           solver: str = "simplex") -> tuple[float, np.ndarray | None]:
    """(lower bound, value per delivery arc and period) of the fleet relaxation WITH the stock flow.

    The fleet bound lets every centre deliver whatever its rescue centres need; in the benchmark's city
    with ``--max-deliveries 2`` its gap to the best plan (3 %) came from centres whose supply sites
    cannot refill them. This LP adds, per centre, material and period, the issues q[j, m, t] with the
    centres' stock balance, supply arcs, supply, on hand, capacity, safety stock and budget, and links
    them to the arcs in value (sum_{d out of j} f[d, t] <= sum_m theta_m q[j, m, t]) and per material
    (q[j, m, t] <= sum_{d out of j} D[k_d, m, t] z[d, t]: a centre issues no more of m than the rescue
    centres its open arcs reach need), with the minimum lot in value (f >= min theta x L x z). Every
    plan gives a feasible point, so it is a lower bound; it drops only which rescue centre gets which
    material beyond those rows. Columns: f, z (arcs x periods), q, I (centres x materials x periods),
    x (supply arcs x materials x periods). Solved by HiGHS's primal simplex (shipping nothing is
    feasible): 1.4 s at city size (18,000 columns) against 8.7 s through scipy's ``linprog``.

    Not at province size: there the supply arcs alone are 280,000 columns and neither primal simplex nor
    the interior point method finished in 150 s (nor with receipts aggregated per centre, a weaker
    variant tried and dropped: city 10,440,381 in 3.1 s; province unsolved in 150 s).
    """
    ix = Index(structure_of(sc))
    n = numbers_of(sc)
    total = float(np.einsum("kmt,m->", n.demand, n.theta))
    if ix.nd == 0:
        return total, None
    supply = _supply_merged(ix, n) if merge_sites else _supply_per_arc(ix, n)
    a_ub, b_ub, a_eq, b_eq = _stock_fleet_rows(ix, n, supply)
    nv, ni = ix.nd * ix.T, ix.n_i
    col_lo = np.concatenate([np.zeros(2 * nv + ni), ix.per_period(n.safety), np.zeros(supply.width)])
    col_hi = np.concatenate([np.full(nv, np.inf), np.ones(nv), np.full(ni, np.inf), ix.per_period(n.max_inventory),
                             supply.upper])
    cost = np.concatenate([-np.ones(nv), np.zeros(nv + 2 * ni + supply.width)])
    rows = sp.vstack([a_ub, a_eq]).tocsc()
    row_lo = np.concatenate([np.full(a_ub.shape[0], -np.inf), b_eq])
    value, x = _primal_simplex(cost, rows, row_lo, np.concatenate([b_ub, b_eq]), col_lo, col_hi, time_limit_s,
                               solver)
    if x is None:
        return 0.0, None  # no bound rather than a wrong one
    return max(total + value - 1e-7 * max(1.0, total), 0.0), x[:nv].reshape(ix.nd, ix.T)


def _primal_simplex(cost: np.ndarray, rows: sp.csc_matrix, row_lo: np.ndarray, row_hi: np.ndarray,
                    col_lo: np.ndarray, col_hi: np.ndarray, time_limit_s: float,
                    solver: str = "simplex") -> tuple[float, np.ndarray | None]:
    """min cost.x over the rows and column bounds with HiGHS's primal simplex; (optimum, x) or (0, None)
    if it did not finish optimal (no bound is better than a wrong one)."""

    h = hp.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("solver", solver)
    h.setOptionValue("simplex_strategy", 4)
    h.setOptionValue("time_limit", float(max(time_limit_s, 1e-3)))
    lp = hp.HighsLp()
    lp.num_col_, lp.num_row_ = rows.shape[1], rows.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, col_lo, col_hi
    lp.row_lower_, lp.row_upper_ = np.maximum(row_lo, -h.inf), np.minimum(row_hi, h.inf)
    lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = rows.indptr, rows.indices, rows.data
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != hp.HighsModelStatus.kOptimal:
        return 0.0, None
    return float(h.getInfo().objective_function_value), np.array(h.getSolution().col_value)


def _stock_fleet_rows(ix: Index, n, supply: "_Supply") -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix, np.ndarray]:
    """The rows of ``stock_fleet_relaxation`` over the columns [f, z, q, I, x] (x: ``supply``'s columns)."""
    T, nd, ni, nx = ix.T, ix.nd, ix.n_i, supply.width
    nv = nd * T
    dt = np.arange(nv)
    d_of, t_of = dt // T, dt % T
    carry = ix.delivery_bound(n).reshape(nd, T)
    v = arc_values(ix, n.demand, n.theta, carry).reshape(-1)

    def block(f=None, z=None, q=None, i=None, x=None, rows=0):
        parts = [f, z, q, i, x]
        widths = [nv, nv, ni, ni, nx]
        return sp.hstack([p if p is not None else sp.csr_matrix((rows, w)) for p, w in zip(parts, widths)])

    ub_rows, ub_rhs = [block(f=sp.identity(nv), z=-sp.diags(v), rows=nv)], [np.zeros(nv)]
    by_k = sp.csr_matrix((np.ones(nv), (ix.d_k[d_of] * T + t_of, dt)), shape=(ix.K * T, nv))
    ub_rows.append(block(f=by_k, rows=ix.K * T))
    ub_rhs.append(np.einsum("kmt,m->kt", n.demand, n.theta).reshape(-1))
    by_j = sp.csr_matrix((np.ones(nv), (ix.d_j[d_of] * T + t_of, dt)), shape=(ix.J * T, nv))
    if len(ix.limited):
        lim = sp.csr_matrix(by_j.toarray().reshape(ix.J, T, nv)[ix.limited].reshape(-1, nv))
        ub_rows.append(block(z=lim, rows=lim.shape[0]))
        ub_rhs.append(np.repeat(n.max_deliveries[ix.limited], T))
    if n.min_lot:
        lot = float(n.min_lot) * float(n.theta.min())
        ub_rows.append(block(f=-sp.identity(nv), z=lot * sp.identity(nv), rows=nv))
        ub_rhs.append(np.zeros(nv))
    # value issued by centre j in t: sum_{d out of j} f <= sum_m theta_m q[j, m, t]
    q_idx = np.arange(ni)
    q_val = sp.csr_matrix((n.theta[(q_idx // T) % ix.M], ((q_idx // (ix.M * T)) * T + q_idx % T, q_idx)),
                          shape=(ix.J * T, ni))
    ub_rows.append(block(f=by_j, q=-q_val, rows=ix.J * T))
    ub_rhs.append(np.zeros(ix.J * T))
    # per material: q[j, m, t] <= sum_{d out of j} D[k_d, m, t] z[d, t]
    dd = np.repeat(dt, ix.M)
    mm = np.tile(np.arange(ix.M), nv)
    reach = sp.csr_matrix((n.demand[ix.d_k[dd // T], mm, dd % T], ((ix.d_j[dd // T] * ix.M + mm) * T + dd % T, dd)),
                          shape=(ni, nv))
    ub_rows.append(block(z=-reach, q=sp.identity(ni), rows=ni))
    ub_rhs.append(np.zeros(ni))
    start = ix.at_start @ n.initial.reshape(-1)
    ub_rows.append(block(q=sp.identity(ni), i=-ix.lag, rows=ni))  # issues from the previous stock
    ub_rhs.append(start)
    ub_rows.append(block(i=ix.stock_rows, rows=ix.J * T))
    ub_rhs.append(np.repeat(n.capacity, T))
    for rows_x, rhs_x in supply.rows:
        ub_rows.append(block(x=rows_x, rows=rows_x.shape[0]))
        ub_rhs.append(rhs_x)
    balance = block(q=sp.identity(ni), i=sp.identity(ni) - ix.lag, x=-supply.receipts, rows=ni)
    return sp.vstack(ub_rows).tocsr(), np.concatenate(ub_rhs), balance.tocsr(), start


@dataclass(frozen=True)
class _Supply:
    """How a relaxation models what reaches the centres: its columns, their upper bounds, its rows
    (matrix, upper bounds) and the receipts matrix (centre x material x period rows over its columns)."""

    width: int
    upper: np.ndarray
    rows: list[tuple[sp.csr_matrix, np.ndarray]]
    receipts: sp.csr_matrix


def _supply_per_arc(ix: Index, n) -> _Supply:
    """Every supply arc, material and period a column: supply and on hand per site, and the budget."""
    rows = [(ix.supply_rows, ix.supply_vec(n)), (ix.on_hand_rows, n.on_hand.reshape(-1))]
    if n.budget is not None:
        rows.append((sp.csr_matrix(ix.price_x(n)[None, :]), np.array([float(n.budget)])))
    return _Supply(ix.n_x, np.full(ix.n_x, np.inf), rows, ix.receipts)


def _supply_merged(ix: Index, n) -> _Supply:
    """Supply sites that ship to the same centres merged into one (province: 500 sites, 72 groups,
    supply-arc columns 280,000 -> 40,320): supply and on hand summed, each unit priced at the cheapest
    member's price. Every plan maps onto it (its shipments summed per group) within the same supply,
    on hand and a no larger spend, so the relaxation stays a lower bound; it is weaker only where a
    merged group could split its shipments in no real way (per-site on hand against per-period supply)
    or buy at a member's lower price."""
    centres_of: dict[int, set[int]] = {}
    for w, j in zip(ix.s_w.tolist(), ix.s_j.tolist()):
        centres_of.setdefault(w, set()).add(j)
    group_ids: dict[tuple[int, ...], int] = {}
    group_of = np.array([group_ids.setdefault(tuple(sorted(centres_of.get(w, ()))), len(group_ids))
                         for w in range(ix.W)])
    G, M, T = len(group_ids), ix.M, ix.T
    supply = np.zeros((G, M, T))
    np.add.at(supply, group_of, n.supply)
    on_hand = np.zeros((G, M))
    np.add.at(on_hand, group_of, n.on_hand)
    price = np.full((G, M, T), np.inf)
    np.minimum.at(price, group_of, n.price)
    arcs = sorted({(int(group_of[w]), int(j)) for w, j in zip(ix.s_w.tolist(), ix.s_j.tolist())})
    a_g = np.array([g for g, _ in arcs], dtype=np.int64)
    a_j = np.array([j for _, j in arcs], dtype=np.int64)
    width = len(arcs) * M * T
    col = np.arange(width)
    c_a, c_m, c_t = col // (M * T), (col // T) % M, col % T
    ones = np.ones(width)
    rows = [(sp.csr_matrix((ones, ((a_g[c_a] * M + c_m) * T + c_t, col)), shape=(G * M * T, width)), supply.reshape(-1)),
            (sp.csr_matrix((ones, (a_g[c_a] * M + c_m, col)), shape=(G * M, width)), on_hand.reshape(-1))]
    if n.budget is not None:
        rows.append((sp.csr_matrix(price[a_g[c_a], c_m, c_t][None, :]), np.array([float(n.budget)])))
    receipts = sp.csr_matrix((ones, ((a_j[c_a] * M + c_m) * T + c_t, col)), shape=(ix.J * M * T, width))
    return _Supply(width, np.full(width, np.inf), rows, receipts)
