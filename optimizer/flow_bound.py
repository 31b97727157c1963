"""A lower bound that keeps the network: each material's maximum flow through the time-expanded graph.

The aggregate bound (``optimizer.decompose.aggregate_relaxation``) merges every site and centre: it
knows the budget but not where supply, stock and demand are, nor that receipts of a period are
deliverable only from the next. On province seed 2 the single-material optima were 17-18 % above it
for some materials (with the capacity and budget shares lifted as well), so no plan could be proven
within 1 % of it.

Here each material on its own, with the budget, the other materials' use of the shared capacity, the
safety stock and integrality dropped (each only relaxes), and every capacity rounded UP: the most it
can deliver is a maximum flow (scipy's Dinic, integer capacities, milliseconds at province size):

    source -> site w (on hand) -> (w, t) (supply of t) -> (j, t) receipts
    source -> (j, 1) before (initial stock);  (j, t) before -> (k, t) (delivery arc) -> sink (demand)
    (j, t) before -> (j, t) after (what is not delivered);  receipts of t -> (j, t) after
    (j, t) after -> (j, t + 1) before (stock held: at most the material's max inventory and the capacity)

Every feasible plan's deliveries of the material are such a flow, so its weighted shortage is at least
theta * (demand - max flow). The sum over materials is a lower bound on the objective; the larger of it
and the aggregate bound is the bound.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_flow

from optimizer.index import Index, Numbers, numbers_of, structure_of
from optimizer.scenario import Scenario

#: Capacity of an arc without a limit: above any total a material can move, within int32 with room for
#: scipy's flow sums (scenarios with larger totals are scaled, see ``_scale``).
UNLIMITED = 2 ** 30


def network_bound(sc: Scenario) -> float:
    """sum over materials of theta * (demand - maximum deliverable flow): a proven lower bound."""
    return float(sum(material_network_bounds(sc)))


def material_network_bounds(sc: Scenario) -> np.ndarray:
    """[M]: each material's lower bound on its weighted shortage (see the module docstring)."""
    n = numbers_of(sc)
    short = np.maximum(n.demand.sum(axis=(0, 2)) - max_deliverable(sc), 0.0)
    return np.maximum(n.theta * short * (1 - 1e-9), 0.0)


def max_deliverable(sc: Scenario) -> np.ndarray:
    """[M]: the most units of each material any plan can deliver over the horizon (a maximum flow of
    the relaxation in the module docstring; rounded up, so never below the true most)."""
    ix, n = Index(structure_of(sc)), numbers_of(sc)
    out = np.zeros(ix.M)
    for m in range(ix.M):
        if n.demand[:, m, :].sum() > 0:
            out[m] = _max_deliverable(ix, n, m, scale=_scale(n, m))
    return out


def _scale(n: Numbers, m: int) -> float:
    """Units per flow unit: 1 unless the material's totals would not fit scipy's int32 capacities."""
    total = float(n.demand[:, m, :].sum() + n.supply[:, m, :].sum() + n.initial[:, m].sum())
    return max(1.0, total / (UNLIMITED / 4))


def _max_deliverable(ix: Index, n: Numbers, m: int, scale: float) -> float:
    """The maximum flow of material m, in units (capacities rounded up after scaling: a relaxation)."""
    W, J, K, T = ix.W, ix.J, ix.K, ix.T
    site, supply_node = 2, 2 + W  # 0 source, 1 sink
    before = supply_node + W * T  # (j, t) before deliveries
    after = before + J * T  # (j, t) after deliveries, receipts in
    demand_node = after + J * T  # (k, t)
    nodes = demand_node + K * T
    rows, cols, caps = [], [], []

    def arcs(tail, head, cap):
        rows.append(np.asarray(tail, dtype=np.int64).ravel())
        cols.append(np.asarray(head, dtype=np.int64).ravel())
        caps.append(np.ceil(np.broadcast_to(np.asarray(cap, dtype=float), np.shape(tail)).ravel() / scale - 1e-9))

    w, t = np.meshgrid(np.arange(W), np.arange(T), indexing="ij")
    arcs(np.zeros(W), site + np.arange(W), n.on_hand[:, m])
    arcs(site + w, supply_node + w * T + t, n.supply[:, m, :])
    s, ts = np.meshgrid(np.arange(ix.ns), np.arange(T), indexing="ij")
    arcs(supply_node + ix.s_w[s] * T + ts, after + ix.s_j[s] * T + ts, UNLIMITED * scale)
    arcs(np.zeros(J), before + np.arange(J) * T, n.initial[:, m])
    j, tj = np.meshgrid(np.arange(J), np.arange(T), indexing="ij")
    arcs(before + j * T + tj, after + j * T + tj, UNLIMITED * scale)
    held = np.minimum(n.max_inventory[:, m], n.capacity)
    arcs((after + j * T + tj)[:, :-1], (before + j * T + tj)[:, 1:], np.repeat(held[:, None], T - 1, axis=1))
    d, td = np.meshgrid(np.arange(ix.nd), np.arange(T), indexing="ij")
    arcs(before + ix.d_j[d] * T + td, demand_node + ix.d_k[d] * T + td, UNLIMITED * scale)
    k, tk = np.meshgrid(np.arange(K), np.arange(T), indexing="ij")
    arcs(demand_node + k * T + tk, np.ones_like(k), n.demand[:, m, :])
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.minimum(np.concatenate(caps), UNLIMITED)
    keep = (v > 0) & (r != c)
    graph = sp.csr_matrix((v[keep].astype(np.int32), (r[keep], c[keep])), shape=(nodes, nodes))
    graph.sum_duplicates()
    return float(maximum_flow(graph, 0, 1).flow_value) * scale
