"""Why a scenario has no plan: an elastic LP that may violate the stock rules at a cost, minimising
the total violation; every violated (family, centre, material, period) is reported in words.

Only the stock rules can make the model infeasible (shipping and delivering nothing satisfies every
other constraint): safety stock (a floor), max inventory (a ceiling per material) and capacity (a
ceiling over all materials). If the relaxation needs no violation, the integrality restrictions are
to blame and we say so.
"""
from __future__ import annotations

import numpy as np
import cvxpy as cp

from optimizer.index import Index, Numbers
from optimizer.scenario import Scenario

MAX_MESSAGES = 20


def diagnose_infeasibility(sc: Scenario, n: Numbers, ix: Index) -> list[str]:
    st = ix.st
    M, T, J = ix.M, ix.T, ix.J
    x = cp.Variable(ix.n_x, nonneg=True)
    y = cp.Variable(ix.n_y, nonneg=True)
    inv = cp.Variable(ix.n_i, nonneg=True)
    under = cp.Variable(ix.n_i, nonneg=True)  # below safety stock
    over = cp.Variable(ix.n_i, nonneg=True)  # above max inventory
    overcap = cp.Variable(J * T, nonneg=True)  # above capacity
    prev = ix.lag @ inv + ix.at_start @ n.initial.reshape(-1)
    cons = [
        inv == prev - ix.issues @ y + ix.receipts @ x,
        ix.issues @ y <= prev,
        ix.delivered @ y <= ix.demand_vec(n),
        ix.supply_rows @ x <= ix.supply_vec(n),
        ix.on_hand_rows @ x <= n.on_hand.reshape(-1),
        inv + under >= ix.per_period(n.safety),
        inv - over <= ix.per_period(n.max_inventory),
        ix.stock_rows @ inv - overcap <= np.repeat(n.capacity, T),
    ]
    if n.budget is not None:
        cons.append(ix.price_x(n) @ x <= n.budget)
    prob = cp.Problem(cp.Minimize(cp.sum(under) + cp.sum(over) + cp.sum(overcap)), cons)
    try:
        prob.solve(solver="HIGHS")
    except Exception as exc:  # the diagnosis must never hide the infeasible status itself
        return [f"infeasible; the diagnosis LP failed: {exc}"]
    if prob.status not in ("optimal", "optimal_inaccurate") or under.value is None:
        return [f"infeasible; the diagnosis LP ended {prob.status}"]
    msgs: list[tuple[float, str]] = []
    jm_t = np.arange(ix.n_i)
    j_of, rem = np.divmod(jm_t, M * T)
    m_of, t_of = np.divmod(rem, T)
    for i in np.flatnonzero(under.value > 1e-6):
        j, m, t = st.distribution_centres[j_of[i]], st.materials[m_of[i]], int(t_of[i]) + 1
        msgs.append((under.value[i], f"safety stock unreachable: distribution centre {j}, material {m}, period {t}: "
                     f"at most {n.safety[j_of[i], m_of[i]] - under.value[i]:g} of the required "
                     f"{n.safety[j_of[i], m_of[i]]:g} units can be held (initial {n.initial[j_of[i], m_of[i]]:g})"))
    for i in np.flatnonzero(over.value > 1e-6):
        j, m, t = st.distribution_centres[j_of[i]], st.materials[m_of[i]], int(t_of[i]) + 1
        msgs.append((over.value[i], f"max inventory exceeded: distribution centre {j}, material {m}, period {t}: "
                     f"{n.max_inventory[j_of[i], m_of[i]] + over.value[i]:g} units must be held, the limit is "
                     f"{n.max_inventory[j_of[i], m_of[i]]:g} (initial {n.initial[j_of[i], m_of[i]]:g})"))
    for i in np.flatnonzero(overcap.value > 1e-6):
        jj, t = divmod(int(i), T)
        msgs.append((overcap.value[i], f"capacity exceeded: distribution centre {st.distribution_centres[jj]}, "
                     f"all materials, period {t + 1}: {n.capacity[jj] + overcap.value[i]:g} units must be held, "
                     f"capacity {n.capacity[jj]:g}"))
    if not msgs:
        return ["infeasible although the continuous relaxation is feasible: the integrality of shipments "
                "(whole units) or of arc decisions makes the stock rules unsatisfiable; check fractional "
                "initial, safety or max inventory values"]
    msgs.sort(key=lambda p: -p[0])
    out = [m for _, m in msgs[:MAX_MESSAGES]]
    if len(msgs) > MAX_MESSAGES:
        out.append(f"... and {len(msgs) - MAX_MESSAGES} more violations of the same kinds")
    return out
