"""The second stage: fewest used arcs with every rescue centre's deliveries fixed to the primary plan's
(so the primary objective is exactly unchanged), warm-started from the primary plan, time-bounded by
the primary solve's effort (a secondary preference must never cost more than the plan itself)."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.formulation import Formulation
from optimizer.index import Numbers
from optimizer.readout import inventory
from optimizer.solver import HighsSolver

ARC_STAGE_EFFORT = 2.0  # the fewer-arcs stage may spend this many times the primary solve's wall time
ARC_STAGE_MIN_S = 0.5  # ... but at least this long (s), so tiny models get a real try


def arc_stage_limit(primary_seconds: float, time_limit_s: float, arc_time_limit_s: float | None) -> float:
    """Time limit of the fewer-arcs stage, s: ``arc_time_limit_s`` if given, else ARC_STAGE_EFFORT times
    the primary solve (at least ARC_STAGE_MIN_S, at most a quarter of the time limit). On the Wuhan pack a
    fixed 15 s limit spent 15 s here after a 0.2 s primary solve."""
    if arc_time_limit_s is not None:
        return max(float(arc_time_limit_s), 1e-3)
    return min(max(ARC_STAGE_EFFORT * primary_seconds, ARC_STAGE_MIN_S), max(time_limit_s / 4, ARC_STAGE_MIN_S))


def fewest_arcs(form: Formulation, solver: HighsSolver, n: Numbers, primary_values: dict[int, np.ndarray],
                limit_s: float, threads: int | None) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any], float, float]:
    """(x, y or None without a plan, summary notes, solve seconds, compile seconds)."""
    ix = form.index
    xv, yv = np.rint(primary_values[form.x.id]), np.rint(primary_values[form.y.id])
    form.params["delivered_target"].value = ix.delivered @ yv
    problem = form.stage2.compile()
    start = dict(primary_values)
    start[form.x.id], start[form.y.id] = xv, yv
    start[form.a.id] = (ix.arc_x @ xv > 0.5).astype(float)
    start[form.b2.id] = (ix.arc_y @ yv > 0.5).astype(float)
    start[form.one.id] = np.ones(1)
    start[form.inv.id] = inventory(ix, n, xv, yv)
    run = solver.solve(problem.data, time_limit_s=limit_s, gap=1e-4, start=problem.columns(start), threads=threads)
    notes = {"arc_stage_status": run.status.value, "arc_stage_seconds": round(run.seconds, 3)}
    if not run.has_solution:
        return None, None, notes, run.seconds, problem.seconds
    v = problem.split(run.values)
    return np.rint(v[form.x.id]), np.rint(v[form.y.id]), notes, run.seconds, problem.seconds
