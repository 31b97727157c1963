"""Reading a plan: solver columns (whole units) -> flows, shortage, objective and summary, and back
(an earlier plan as a MIP start). Pure numpy on the model's index; no solver here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.index import Index, Numbers
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import Scenario
from optimizer.summary import summarise
from optimizer.urgency import Urgency


def shortage_vec(ix: Index, n: Numbers, yv: np.ndarray) -> np.ndarray:
    """Unmet demand per (rescue centre, material, period), flattened in the model's order."""
    return np.maximum(ix.demand_vec(n) - ix.delivered @ yv, 0.0)


def primary_objective(ix: Index, n: Numbers, yv: np.ndarray) -> float:
    """sum theta * shortage, recomputed from the deliveries (never the solver's objective value)."""
    return float(np.repeat(np.tile(n.theta, ix.K), ix.T) @ shortage_vec(ix, n, yv))


def inventory(ix: Index, n: Numbers, xv: np.ndarray, yv: np.ndarray) -> np.ndarray:
    """End-of-period stock per (centre, material, period) implied by the flows."""
    net = (ix.receipts @ xv - ix.issues @ yv).reshape(ix.J, ix.M, ix.T)
    return (n.initial[:, :, None] + np.cumsum(net, axis=2)).reshape(-1)


def arcs_used(ix: Index, xv: np.ndarray, yv: np.ndarray) -> int:
    """Supply and delivery arcs carrying anything, counted per period."""
    return int((ix.arc_x @ xv > 0.5).sum() + (ix.arc_y @ yv > 0.5).sum())


def flows_of(ix: Index, res: PlanResult) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) column values of an earlier plan of the same structure."""
    st = ix.st
    mpos = {m: i for i, m in enumerate(st.materials)}
    sarc = {a: i for i, a in enumerate(st.supply_arcs)}
    darc = {a: i for i, a in enumerate(st.delivery_arcs)}
    xv, yv = np.zeros(ix.n_x), np.zeros(ix.n_y)
    for f in res.shipments_in:
        xv[(sarc[(f.origin, f.destination)] * ix.M + mpos[f.material]) * ix.T + f.period - 1] = f.qty
    for f in res.deliveries:
        yv[(darc[(f.origin, f.destination)] * ix.M + mpos[f.material]) * ix.T + f.period - 1] = f.qty
    return xv, yv


@dataclass(frozen=True)
class Timing:
    """Seconds spent, for the result: solve (all solver runs), build (first solve only), compile."""

    solve: float
    build: float
    compile: float


def plan_result(sc: Scenario, n: Numbers, ix: Index, urg: Urgency, *, status: SolveStatus, objective: float,
                bound: float, gap: float | None, timing: Timing, xv: np.ndarray, yv: np.ndarray,
                extra: dict[str, Any], message: str) -> PlanResult:
    """A PlanResult with flows (nonzero whole units), shortage and summary from the column values."""
    st, T = ix.st, ix.T
    nz = np.flatnonzero(xv > 0.5)
    ship = tuple(Flow(st.supply_sites[ix.x_w[i]], st.distribution_centres[ix.x_j[i]], st.materials[ix.x_m[i]],
                      int(ix.x_t[i]) + 1, float(xv[i])) for i in nz)
    nz = np.flatnonzero(yv > 0.5)
    dels = tuple(Flow(st.distribution_centres[ix.y_j[i]], st.rescue_centres[ix.y_k[i]], st.materials[ix.y_m[i]],
                      int(ix.y_t[i]) + 1, float(yv[i])) for i in nz)
    short = shortage_vec(ix, n, yv)
    nz = np.flatnonzero(short > 1e-9)
    k_of, rem = np.divmod(nz, ix.M * T)
    m_of, t_of = np.divmod(rem, T)
    shortages = tuple(Shortage(st.rescue_centres[k], st.materials[m], int(t) + 1, float(q))
                      for k, m, t, q in zip(k_of, m_of, t_of, short[nz]))
    summary = summarise(sc, n, short.reshape(ix.K, ix.M, T), spent=float(ix.price_x(n) @ xv)) | extra
    return PlanResult(status=status, objective=objective, bound=bound, gap=gap, solve_seconds=timing.solve,
                      build_seconds=timing.build, compile_seconds=timing.compile, urgency=urg, shipments_in=ship,
                      deliveries=dels, shortage=shortages, summary=summary, message=message)
