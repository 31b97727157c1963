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

from dataclasses import dataclass

import highspy as hp
import numpy as np
import scipy.sparse as sp

from optimizer.index import Index, Numbers


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
    import time

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


def _solve(nb: _Neighbourhood, *, relax: bool, nodes: int, time_limit_s: float):
    """(gain in theta-weighted units over the current plan, columns or None, model status)."""
    h = hp.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_max_nodes", int(nodes))
    h.setOptionValue("mip_rel_gap", 1e-4)
    if relax:
        nb.lp.integrality_ = []  # the ranking's model is not solved again
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
