"""Solve strategies for the primary stage, one module each; every one returns a :class:`StrategyOutcome`.

- ``lp_rens``: LP bound, RENS rounding, then the full MILP warm-started (models without arc binaries);
- ``lp_guided``: LP bound, the MILP on the arcs the LP uses most, then the full MILP (with arc binaries);
- ``direct``: HiGHS on the MILP as it is (``method="milp"``, a warm start, or a neighbourhood of open arcs);
- ``arc_stage``: the second, fewest-arcs stage (the primary objective kept exactly).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimizer.solver import SolverStatus


@dataclass(frozen=True)
class StrategyOutcome:
    """What a strategy produced: status, the plan's columns (None without a plan), a proven bound."""

    status: SolverStatus
    values: np.ndarray | None
    bound: float | None  # a proven lower bound of the scenario (None: none, e.g. a restricted problem)
    notes: dict[str, Any] = field(default_factory=dict)  # method, stage times: go into the plan's summary
    compile_seconds: float = 0.0  # re-compiles the strategy needed, s
    basis: Any = None  # the LP's final simplex basis (a warm start for the next LP of this shape)
    detail: str = ""  # the solver's own word for how it stopped, for messages

    @property
    def has_solution(self) -> bool:
        return self.values is not None


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / objective, 0 for a zero objective (nothing short)."""
    return 0.0 if objective <= 1e-9 else (objective - bound) / max(abs(objective), 1e-9)
