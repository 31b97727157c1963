"""Fix-and-optimize per distribution centre: re-choose one centre's delivery arcs, deliveries and
receipts with everything else in the plan fixed.

The decomposition by material fixes the delivery arcs once, to the fleet LP's choice, and the fleet
LP ranks arcs without the stock flow or the other centres' deliveries to the same rescue centre. One
centre's neighbourhood keeps every rule exactly (its delivery limit and the minimum lot over all
materials, its stock balance, capacity and safety stock, its supply sites' supply and on hand left by
the other centres, the budget left by the rest of the plan, each rescue centre's demand left by the
other centres), so a solution of it merged into the plan is a plan of the whole scenario. It is a small
MILP (province: 13-59 arcs x 20 materials x 14 periods).

Which centres: each neighbourhood's LP relaxation bounds what it can gain; the centres with the
largest such bound are solved as MILPs, warm-started from the plan (so never worse). Province seed 1,
F = 3, lot 20: the LP ranking put the two centres that gained (57,144 and 46,848 LP, 8,812 and 46,849
in the MILP) first of 40; every centre solved in turn found nothing more elsewhere (35 s at load 2.5).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import highspy as hp
import numpy as np
import scipy.sparse as sp

from optimizer.index import Index, Numbers


#: Neighbourhoods with more columns than this are ranked by HiGHS's interior point method without
#: crossover (the ranking needs only the LP's objective): province seed 3, F = 3, lot 20, the LPs of
#: centres 7 / 30 / 15 (39,704 / 33,642 / 18,480 columns) 11.8 s by dual simplex, 5.0 s so; on the
#: small ones the dual simplex is 2.5x faster (one run, load average 2, 2026-12-01 19:20 UTC).
RANK_IPM_COLUMNS = 20_000
#: The joint neighbourhood's MILP solves its LPs by the interior point method: province seed 3,
#: centres 34 and 29, the root LP 2.1 s instead of 12.3 s by dual simplex, and the MILP done (its own
#: 1 % gap) at 15-19 s instead of 21-24 s, gaining 691,365 instead of 657,148 (load average 1.6-2.2).
JOINT_LP_SOLVER = "ipm"


@dataclass(frozen=True)
class _Neighbourhood:
    """One centre's MILP over the columns [y (arcs, M, T), b (arcs, T), I (M, T), x (supply arcs, M, T)]."""

    arcs: np.ndarray  # the centre's delivery arcs (positions in the scenario)
    sarcs: np.ndarray  # its supply arcs
    lp: hp.HighsLp
    start: np.ndarray  # the current plan's columns (a feasible MIP start)
    current: float  # theta-weighted units the current plan delivers from this centre


def improve_centres(ix: Index, n: Numbers, shipped: np.ndarray, delivered: np.ndarray, *, centres: int,
                    nodes: int, time_limit_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(shipped, delivered, info): the plan [supply arcs, M, T], [delivery arcs, M, T] after the MILP of
    the ``centres`` neighbourhoods whose LP relaxation promises most (ranked on the plan given), each
    accepted only if it delivers more theta-weighted units. ``nodes``: HiGHS's node limit per MILP (a
    work limit); ``time_limit_s`` the safety net for the whole stage (``info["stopped_by_clock"]``)."""
    t0 = time.perf_counter()
    ranked = [_solve(_model(ix, n, j, shipped, delivered), relax=True, nodes=nodes,
                     time_limit_s=max(time_limit_s - (time.perf_counter() - t0), 1e-3)) for j in range(ix.J)]
    gains = np.array([gain for gain, _, _ in ranked])
    order = [int(j) for j in np.argsort(-gains, kind="stable")[:centres] if gains[j] > 1e-6]
    info: dict = {"lp_gains": {int(j): round(float(gains[j]), 1) for j in order}, "gains": {},
                  "stopped_by_clock": any(status == hp.HighsModelStatus.kTimeLimit for _, _, status in ranked)}
    for j in order:
        left = time_limit_s - (time.perf_counter() - t0)
        if left <= 0:
            info["stopped_by_clock"] = True
            break
        nb = _model(ix, n, j, shipped, delivered)
        gain, col, status = _solve(nb, relax=False, nodes=nodes, time_limit_s=left)
        info["stopped_by_clock"] |= status == hp.HighsModelStatus.kTimeLimit
        if col is None or gain <= 1e-6:
            continue
        A, S, M, T = len(nb.arcs), len(nb.sarcs), ix.M, ix.T
        delivered, shipped = delivered.copy(), shipped.copy()
        delivered[nb.arcs] = np.round(col[:A * M * T]).reshape(A, M, T)
        shipped[nb.sarcs] = np.round(col[col.size - S * M * T:]).reshape(S, M, T)
        info["gains"][j] = round(float(gain), 1)
    return shipped, delivered, info


def neighbours(ix: Index, j: int) -> np.ndarray:
    """The other centres that serve one of centre j's rescue centres (ascending)."""
    shared = np.isin(ix.d_k, ix.d_k[ix.d_j == j]) & (ix.d_j != j)
    return np.unique(ix.d_j[shared])


def lp_gains(ix: Index, n: Numbers, shipped: np.ndarray, delivered: np.ndarray, centres: np.ndarray,
             time_limit_s: float) -> tuple[np.ndarray, bool]:
    """(what each of ``centres``' neighbourhoods' LP relaxation promises to gain over the plan, whether the
    clock stopped one of them)."""
    t0, gains, by_clock = time.perf_counter(), [], False
    for j in centres:
        gain, _, status = _solve(_model(ix, n, int(j), shipped, delivered), relax=True, nodes=0,
                                 time_limit_s=max(time_limit_s - (time.perf_counter() - t0), 1e-3))
        gains.append(gain)
        by_clock |= status == hp.HighsModelStatus.kTimeLimit
    return np.array(gains, dtype=float), by_clock


def _solve(nb: _Neighbourhood, *, relax: bool, nodes: int, time_limit_s: float):
    """(gain in theta-weighted units over the current plan, columns or None, model status)."""
    h = hp.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_max_nodes", int(nodes))
    h.setOptionValue("mip_rel_gap", 1e-4)
    if relax:
        nb.lp.integrality_ = []  # the ranking's model is not solved again
        if nb.lp.num_col_ > RANK_IPM_COLUMNS:  # only the objective ranks: no crossover needed
            h.setOptionValue("solver", "ipm")
            h.setOptionValue("run_crossover", "off")
    h.passModel(nb.lp)
    if not relax:
        sol = hp.HighsSolution()
        sol.col_value = nb.start.tolist()
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    if relax:
        ok = status == hp.HighsModelStatus.kOptimal
    else:
        ok = h.getInfo().primal_solution_status == 2  # a feasible solution (at least the start)
    if not ok:
        return 0.0, None, status
    gain = -float(h.getInfo().objective_function_value) - nb.current
    return gain, np.array(h.getSolution().col_value), status


def _model(ix: Index, n: Numbers, j: int, shipped: np.ndarray, delivered: np.ndarray) -> _Neighbourhood:
    """Centre j's neighbourhood with the rest of the plan fixed (see the module docstring)."""
    M, T = ix.M, ix.T
    arcs, sarcs = np.flatnonzero(ix.d_j == j), np.flatnonzero(ix.s_j == j)
    A, S = len(arcs), len(sarcs)
    ny, nb, ni, nx = A * M * T, A * T, M * T, S * M * T
    got = np.zeros_like(n.demand)
    np.add.at(got, ix.d_k, delivered)
    dres = np.maximum(n.demand[ix.d_k[arcs]] - got[ix.d_k[arcs]] + delivered[arcs], 0.0)  # [A, M, T]
    by_site = np.zeros_like(n.supply)
    np.add.at(by_site, ix.s_w, shipped)
    w = ix.s_w[sarcs]
    sup_res = np.maximum(n.supply[w] - by_site[w] + shipped[sarcs], 0.0)  # [S, M, T]
    oh_res = np.maximum(n.on_hand[w] - by_site[w].sum(axis=2) + shipped[sarcs].sum(axis=2), 0.0)  # [S, M]
    rows = _Rows(ny + nb + ni + nx)
    y_at = lambda a, m, t: (a * M + m) * T + t  # noqa: E731
    i_at = lambda m, t: ny + nb + m * T + t  # noqa: E731
    a_, m_, t_ = (g.reshape(-1) for g in np.meshgrid(np.arange(A), np.arange(M), np.arange(T), indexing="ij"))
    s_, sm_, st_ = (g.reshape(-1) for g in np.meshgrid(np.arange(S), np.arange(M), np.arange(T), indexing="ij"))
    im, it = np.repeat(np.arange(M), T), np.tile(np.arange(T), M)
    later = it > 0
    start = np.where(it == 0, n.initial[j][im], 0.0)
    ycol, xcol = np.arange(ny), ny + nb + ni + np.arange(nx)
    # stock balance: I[m, t] - I[m, t-1] + issues - receipts = initial (t = 0) / 0
    rows.add([m_ * T + t_, im * T + it, (im * T + it)[later], sm_ * T + st_],
             [ycol, i_at(im, it), i_at(im, it - 1)[later], xcol],
             [np.ones(ny), np.ones(ni), -np.ones(int(later.sum())), -np.ones(nx)], ni, start, start)
    # issues from the previous period's stock only
    rows.add([m_ * T + t_, (im * T + it)[later]], [ycol, i_at(im, it - 1)[later]],
             [np.ones(ny), -np.ones(int(later.sum()))], ni, np.full(ni, -np.inf), start)
    rows.add([it], [i_at(im, it)], [np.ones(ni)], T, np.full(T, -np.inf), np.full(T, n.capacity[j]))
    held = np.full(T, n.capacity[j])
    held[0] = n.initial[j].sum()
    big = np.minimum(dres.sum(axis=1), held[None, :]).reshape(-1)  # [A * T]
    arc_t = a_ * T + t_
    bcol = ny + np.arange(nb)
    rows.add([arc_t, np.arange(nb)], [ycol, bcol], [np.ones(ny), -big], nb, np.full(nb, -np.inf), np.zeros(nb))
    if n.min_lot:
        rows.add([arc_t, np.arange(nb)], [ycol, bcol], [np.ones(ny), np.full(nb, -float(n.min_lot))], nb,
                 np.zeros(nb), np.full(nb, np.inf))
    u = np.minimum(dres.reshape(-1), np.where(t_ == 0, n.initial[j][m_], n.max_inventory[j][m_]))
    tight = np.flatnonzero(u < big[arc_t] - 1e-9)  # per-material big-M rows, where tighter than the arc's
    rows.add([np.arange(tight.size)] * 2, [ycol[tight], ny + arc_t[tight]], [np.ones(tight.size), -u[tight]],
             tight.size, np.full(tight.size, -np.inf), np.zeros(tight.size))
    if n.max_deliveries[j] >= 0:
        rows.add([np.arange(nb) % T], [bcol], [np.ones(nb)], T, np.full(T, -np.inf), np.full(T, n.max_deliveries[j]))
    rows.add([s_ * M + sm_], [xcol], [np.ones(nx)], S * M, np.full(S * M, -np.inf), oh_res.reshape(-1))
    if n.budget is not None:
        price = n.price[ix.s_w]  # [supply arcs, M, T]
        spent_else = float(np.einsum("smt,smt->", shipped, price) - np.einsum("smt,smt->", shipped[sarcs], price[sarcs]))
        rows.add([np.zeros(nx, dtype=np.int64)], [xcol], [price[sarcs].reshape(-1)], 1, np.array([-np.inf]),
                 np.array([float(n.budget) - spent_else]))
    lo = np.concatenate([np.zeros(ny + nb), np.repeat(n.safety[j], T), np.zeros(nx)])
    hi = np.concatenate([dres.reshape(-1), np.ones(nb), np.repeat(n.max_inventory[j], T), sup_res.reshape(-1)])
    cost = np.concatenate([-n.theta[m_], np.zeros(nb + ni + nx)])
    integer = np.concatenate([np.ones(ny + nb, dtype=bool), np.zeros(ni, dtype=bool), np.ones(nx, dtype=bool)])
    lp = rows.lp(cost, lo, hi, integer)
    y0 = delivered[arcs].reshape(-1)
    b0 = (delivered[arcs].sum(axis=1) > 0.5).astype(float).reshape(-1)
    stock = n.initial[j][:, None] + np.cumsum(shipped[sarcs].sum(axis=0) - delivered[arcs].sum(axis=0), axis=1)
    x_start = np.concatenate([y0, b0, stock.reshape(-1), shipped[sarcs].reshape(-1)])
    return _Neighbourhood(arcs, sarcs, lp, x_start, float(n.theta @ delivered[arcs].sum(axis=(0, 2))))


class _Rows:
    """Row blocks of a sparse LP, appended block by block (coordinates, values, row bounds)."""

    def __init__(self, width: int):
        self.width, self.r, self.c, self.v, self.lo, self.hi, self.count = width, [], [], [], [], [], 0

    def add(self, rows: list, cols: list, vals: list, count: int, lo: np.ndarray, hi: np.ndarray) -> None:
        self.r += [np.asarray(r, dtype=np.int64) + self.count for r in rows]
        self.c += [np.asarray(c, dtype=np.int64) for c in cols]
        self.v += [np.asarray(v, dtype=float) for v in vals]
        self.lo.append(np.broadcast_to(lo, (count,)))
        self.hi.append(np.broadcast_to(hi, (count,)))
        self.count += count

    def lp(self, cost: np.ndarray, lo: np.ndarray, hi: np.ndarray, integer: np.ndarray) -> hp.HighsLp:
        a = sp.csc_matrix((np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))),
                          shape=(self.count, self.width))
        lp = hp.HighsLp()
        lp.num_col_, lp.num_row_ = self.width, self.count
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lo, hi
        lp.row_lower_, lp.row_upper_ = np.concatenate(self.lo), np.concatenate(self.hi)
        lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
        lp.integrality_ = [hp.HighsVarType.kInteger if f else hp.HighsVarType.kContinuous for f in integer]
        return lp


@dataclass(frozen=True)
class _Joint:
    """Several centres' neighbourhoods side by side with the rows they share."""

    lp: hp.HighsLp
    start: np.ndarray
    current: float
    y_cols: list[np.ndarray]  # per centre: its y columns [arcs, M, T] ...
    arcs: list[np.ndarray]  # ... and its delivery arcs
    x_cols: list[np.ndarray]  # per centre: its x columns [supply arcs, M, T] ...
    sarcs: list[np.ndarray]  # ... and its supply arcs


def joint_partners(ix: Index, n: Numbers, delivered: np.ndarray, around: int, partners: int,
                   shortfall: np.ndarray | None = None) -> list[int]:
    """``around`` and its ``partners``: among the centres that deliver to one of its rescue centres, those
    with the largest ``shortfall`` (per centre, e.g. the value the fleet LP sends from it minus what the
    plan delivers: where the plan's arc choice lost most), or without it those that deliver most there.
    Province F = 3, lot 20, the joint LP's promise around the centre ranked first, by shortfall / by
    delivery: seed 1 355,127 (12) / the same, seed 2 177,694 (35) / 15,053 (9), seed 3 723,961 (29) /
    the same."""
    arcs = np.flatnonzero(ix.d_j == around)
    into = np.isin(ix.d_k, ix.d_k[arcs]) & (ix.d_j != around)
    value = np.zeros(ix.J)
    np.add.at(value, ix.d_j[into], np.einsum("dmt,m->d", delivered[into], n.theta))
    score = value if shortfall is None else np.where(value > 1e-9, shortfall, -np.inf)
    return [around] + [int(j) for j in np.argsort(-score, kind="stable")[:partners] if value[j] > 1e-9]


def improve_joint(ix: Index, n: Numbers, shipped: np.ndarray, delivered: np.ndarray, *, around: int, partners: int,
                  nodes: int, rel_gap: float, time_limit_s: float,
                  shortfall: np.ndarray | None = None,
                  centres: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(shipped, delivered, info) after the JOINT neighbourhood of centre ``around`` and its ``partners``
    (``joint_partners``): their arcs, deliveries, receipts and stock re-chosen together, the rest of the
    plan fixed, warm-started from the plan (never worse). One centre alone cannot take a rescue centre
    another one serves; two together can swap. Province seed 3, F = 3, lot 20: centre 34 alone gains
    243,067, with centre 29 697,708. Solved in two steps: the arcs binary with the flows continuous, then
    the flows integer on the arcs the first step chose (a small MILP, 0.2 s): 9.1 s against 15.6 s for the
    one MILP with integer flows, which gained 691,365, 11 s of it in one RINS sub-MIP (load average 1-2,
    2026-12-01 20:03 UTC). ``nodes`` and ``rel_gap`` (each step's own gap) are the work limits.
    ``centres``: the centres to solve together, chosen by the caller
    (``around`` and ``partners`` are then not used)."""
    chosen = joint_partners(ix, n, delivered, around, partners, shortfall) if centres is None else list(centres)
    nb = _joint_model(ix, n, chosen, shipped, delivered)
    flows = np.concatenate(nb.y_cols + nb.x_cols)
    t0 = time.perf_counter()
    # Step 1: the arcs binary, the flows continuous; step 2: the arcs fixed to step 1's, the flows integer.
    arcs_lp = dataclasses.replace(nb, lp=_with_flows(nb.lp, flows, integer=False))
    first, by_clock = _joint_milp(arcs_lp, nodes, rel_gap, time_limit_s)
    col, second_clock = None, False
    if first is not None:
        fixed = _with_flows(nb.lp, flows, integer=True, arcs_from=first)
        start = np.floor(first + 1e-9)
        col, second_clock = _joint_milp(dataclasses.replace(nb, lp=fixed, start=start), nodes, rel_gap,
                                        time_limit_s - (time.perf_counter() - t0))
    info = {"centres": chosen, "gain": 0.0, "stopped_by_clock": by_clock or second_clock}
    if col is None:
        return shipped, delivered, info
    gain = float(-(np.asarray(nb.lp.col_cost_) @ col)) - nb.current
    if gain <= 1e-6:
        return shipped, delivered, info
    shipped, delivered = shipped.copy(), delivered.copy()
    for y, a, x, s in zip(nb.y_cols, nb.arcs, nb.x_cols, nb.sarcs):
        delivered[a] = np.round(col[y]).reshape(len(a), ix.M, ix.T)
        shipped[s] = np.round(col[x]).reshape(len(s), ix.M, ix.T)
    info["gain"] = round(gain, 1)
    return shipped, delivered, info


def _with_flows(lp: hp.HighsLp, flows: np.ndarray, *, integer: bool, arcs_from: np.ndarray | None = None) -> hp.HighsLp:
    """A copy of the joint MILP with its flow columns integer or continuous and, with ``arcs_from``, every
    other integer column (the arc binaries) fixed to its value there."""
    out = hp.HighsLp()
    out.num_col_, out.num_row_ = lp.num_col_, lp.num_row_
    out.col_cost_, out.col_lower_, out.col_upper_ = lp.col_cost_, lp.col_lower_, lp.col_upper_
    out.row_lower_, out.row_upper_ = lp.row_lower_, lp.row_upper_
    out.a_matrix_.format_ = lp.a_matrix_.format_
    out.a_matrix_.start_, out.a_matrix_.index_, out.a_matrix_.value_ = (lp.a_matrix_.start_, lp.a_matrix_.index_,
                                                                        lp.a_matrix_.value_)
    kinds = list(lp.integrality_)
    kind = hp.HighsVarType.kInteger if integer else hp.HighsVarType.kContinuous
    for i in flows.tolist():
        kinds[i] = kind
    out.integrality_ = kinds
    if arcs_from is not None:
        arcs = np.array([k == hp.HighsVarType.kInteger for k in lp.integrality_])
        arcs[flows] = False
        lo, hi = np.array(lp.col_lower_), np.array(lp.col_upper_)
        lo[arcs] = hi[arcs] = np.round(arcs_from[arcs])
        out.col_lower_, out.col_upper_ = lo, hi
    return out


def _joint_milp(nb: "_Joint", nodes: int, rel_gap: float, time_limit_s: float) -> tuple[np.ndarray | None, bool]:
    """(the columns of the best solution HiGHS found from the start ``nb.start`` or None, whether the clock
    stopped it)."""
    h = hp.Highs()
    for name, v in (("output_flag", False), ("time_limit", float(max(time_limit_s, 1e-3))),
                    ("mip_max_nodes", int(nodes)), ("mip_rel_gap", float(rel_gap)), ("mip_lp_solver", JOINT_LP_SOLVER)):
        h.setOptionValue(name, v)
    h.passModel(nb.lp)
    sol = hp.HighsSolution()
    sol.col_value = nb.start.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    by_clock = h.getModelStatus() == hp.HighsModelStatus.kTimeLimit
    if h.getInfo().primal_solution_status != 2:
        return None, by_clock
    return np.array(h.getSolution().col_value), by_clock


def _joint_model(ix: Index, n: Numbers, centres: list[int], shipped: np.ndarray, delivered: np.ndarray) -> _Joint:
    """Each centre's neighbourhood built against the plan WITHOUT any of ``centres``, side by side, plus
    the rows they share (a rescue centre's residual demand, a site's residual supply and on hand, where
    two or more columns meet; the budget left by the rest replaces each part's own budget row)."""
    out_d = np.where(np.isin(ix.d_j, centres)[:, None, None], 0.0, delivered)
    out_s = np.where(np.isin(ix.s_j, centres)[:, None, None], 0.0, shipped)
    parts = [_model(ix, n, j, out_s, out_d) for j in centres]
    fulls = [_model(ix, n, j, shipped, delivered) for j in centres]  # the same columns, the plan as start
    M, T = ix.M, ix.T
    offs = np.cumsum([0] + [p.lp.num_col_ for p in parts])
    blocks = [sp.csc_matrix((np.asarray(p.lp.a_matrix_.value_), np.asarray(p.lp.a_matrix_.index_),
                             np.asarray(p.lp.a_matrix_.start_)), shape=(p.lp.num_row_, p.lp.num_col_)) for p in parts]
    row_hi = [np.array(p.lp.row_upper_, dtype=float) for p in parts]
    if n.budget is not None:  # each part's last row is its budget row
        for hi in row_hi:
            hi[-1] = np.inf
    mt = np.repeat(np.arange(M), T), np.tile(np.arange(T), M)
    y_cols, x_cols, y_key, x_key, x_site = [], [], [], [], []
    for p, off in zip(parts, offs[:-1]):
        ny, nx = len(p.arcs) * M * T, len(p.sarcs) * M * T
        y_cols.append(off + np.arange(ny))
        x_cols.append(off + p.lp.num_col_ - nx + np.arange(nx))
        y_mat = np.repeat(ix.d_k[p.arcs], M * T) * M + np.tile(mt[0], len(p.arcs))
        y_key.append(y_mat * T + np.tile(mt[1], len(p.arcs)))
        x_site.append(np.repeat(ix.s_w[p.sarcs], M * T) * M + np.tile(mt[0], len(p.sarcs)))
        x_key.append(x_site[-1] * T + np.tile(mt[1], len(p.sarcs)))
    got, by_site = np.zeros_like(n.demand), np.zeros_like(n.supply)
    np.add.at(got, ix.d_k, out_d)
    np.add.at(by_site, ix.s_w, out_s)
    xs = np.concatenate(x_cols)
    width = int(offs[-1])
    demand_left = np.maximum(n.demand - got, 0).reshape(-1)
    shared = [_shared_rows(np.concatenate(y_cols), np.concatenate(y_key), demand_left, width),
              _shared_rows(xs, np.concatenate(x_key), np.maximum(n.supply - by_site, 0).reshape(-1), width),
              _shared_rows(xs, np.concatenate(x_site), np.maximum(n.on_hand - by_site.sum(axis=2), 0).reshape(-1),
                           width)]
    if n.budget is not None:
        price = np.concatenate([n.price[ix.s_w[p.sarcs]].reshape(-1) for p in parts])
        spent_out = float(np.einsum("smt,smt->", out_s, n.price[ix.s_w]))
        shared.append((sp.csr_matrix((price, (np.zeros(xs.size, dtype=np.int64), xs)), shape=(1, offs[-1])),
                       np.array([float(n.budget) - spent_out])))
    a = sp.vstack([sp.block_diag(blocks, format="csr")] + [m for m, _ in shared]).tocsc()
    lp = hp.HighsLp()
    lp.num_col_, lp.num_row_ = int(offs[-1]), a.shape[0]
    lp.col_cost_ = np.concatenate([np.asarray(p.lp.col_cost_) for p in parts])
    lp.col_lower_ = np.concatenate([np.asarray(p.lp.col_lower_) for p in parts])
    lp.col_upper_ = np.concatenate([np.asarray(p.lp.col_upper_) for p in parts])
    lp.row_lower_ = np.concatenate([np.asarray(p.lp.row_lower_) for p in parts]
                                   + [np.full(len(h), -np.inf) for _, h in shared])
    lp.row_upper_ = np.concatenate(row_hi + [h for _, h in shared])
    lp.a_matrix_.format_ = hp.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.integrality_ = [t for p in parts for t in p.lp.integrality_]
    return _Joint(lp, np.concatenate([f.start for f in fulls]), float(sum(f.current for f in fulls)),
                  y_cols, [p.arcs for p in parts], x_cols, [p.sarcs for p in parts])


def _shared_rows(cols: np.ndarray, keys: np.ndarray, rhs: np.ndarray, width: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """sum of the columns with the same key <= rhs[key], only for keys that two or more columns share
    (a key of one column is already that column's upper bound)."""
    uniq, row = np.unique(keys, return_inverse=True)
    count = np.bincount(row)
    keep = np.flatnonzero(count >= 2)
    pos = np.full(uniq.size, -1, dtype=np.int64)
    pos[keep] = np.arange(keep.size)
    sel = count[row] >= 2
    return (sp.csr_matrix((np.ones(int(sel.sum())), (pos[row[sel]], cols[sel])), shape=(keep.size, width)),
            rhs[uniq[keep]])
