"""What a solve produced: a small frozen dataclass with a status enum, never raised, never faked.

``objective`` is always the PRIMARY objective (sum of theta times shortage, in theta-weighted units);
a secondary preference (fewer arcs) never enters it. With status ``no_solution`` or ``infeasible``
there are no flows and no objective: the solver found no plan, and we do not print zeros for one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from optimizer.urgency import Urgency


class SolveStatus(str, Enum):
    OPTIMAL = "optimal"  # proven within the requested relative gap
    FEASIBLE = "feasible"  # a plan, stopped at a limit before the gap was proven
    INFEASIBLE = "infeasible"  # no plan satisfies the constraints (see PlanResult.infeasibility)
    NO_SOLUTION = "no_solution"  # stopped (time limit, solver error) without any plan

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Flow:
    """``qty`` units of ``material`` moved from ``origin`` to ``destination`` in ``period`` (from 1)."""

    origin: str
    destination: str
    material: str
    period: int
    qty: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"from": self.origin, "to": self.destination, "material": self.material,
                "period": self.period, "qty": self.qty}


@dataclass(frozen=True)
class Shortage:
    """Demand of ``rescue_centre`` for ``material`` in ``period`` left unmet, in units of the material."""

    rescue_centre: str
    material: str
    period: int
    qty: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"centre": self.rescue_centre, "material": self.material, "period": self.period, "qty": self.qty}


@dataclass(frozen=True)
class PlanResult:
    status: SolveStatus
    objective: float | None  # sum theta * shortage (primary only); None without a plan
    bound: float | None  # proven lower bound on the primary objective; None if the solver gave none
    gap: float | None  # (objective - bound) / objective, 0 when both are 0; None without a plan
    solve_seconds: float  # wall time in the solver(s), s
    build_seconds: float  # building the CVXPY problem (0 on a re-solve), s
    compile_seconds: float  # CVXPY compile (or parameter update on a re-solve), s
    urgency: Urgency
    shipments_in: tuple[Flow, ...] = ()  # supply site -> distribution centre
    deliveries: tuple[Flow, ...] = ()  # distribution centre -> rescue centre
    shortage: tuple[Shortage, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    infeasibility: tuple[str, ...] = ()  # human messages naming constraint family and (centre, material, period)
    message: str = ""  # what the solver said, in words

    @property
    def has_plan(self) -> bool:
        return self.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)

    def to_json_dict(self) -> dict[str, Any]:
        """The public JSON contract: integrators read these keys, so they keep their names."""
        summary = dict(self.summary)
        if self.infeasibility:
            summary["infeasibility"] = list(self.infeasibility)
        if self.message:
            summary["message"] = self.message
        return {
            "status": self.status.value,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "solve_seconds": self.solve_seconds,
            "urgency": self.urgency.to_json_dict(),
            "shipments_in": [f.to_json_dict() for f in self.shipments_in],
            "deliveries": [f.to_json_dict() for f in self.deliveries],
            "shortage": [s.to_json_dict() for s in self.shortage],
            "summary": summary,
        }
