"""Optimizer: pure model code. A scenario in, a plan out; no Kafka, MQTT or SQL here.

Public API (other stages import only these names):
``Scenario``, ``load_scenario``, ``ScenarioError``, ``plan``, ``plan_anytime``, ``Planner``, ``PlanResult``,
``SolveStatus``, ``Flow``, ``Shortage``, ``Urgency``, ``urgency``, ``THETA_FUNCTIONS``.

Names are imported lazily (PEP 562) so that ``vreserve --help``, which imports ``optimizer.cli``,
does not pay for scipy and cvxpy. The urgency names are bound eagerly: the submodule
``optimizer.urgency`` would otherwise shadow the function ``urgency`` once imported (numpy only).
"""
from __future__ import annotations

import importlib
from typing import Any

from optimizer.errors import ScenarioError
from optimizer.urgency import DEFAULT_THETA, INDICATORS, THETA_FUNCTIONS, Urgency, UrgencyError, urgency

_WHERE = {
    "Planner": "optimizer.model", "plan": "optimizer.model", "plan_anytime": "optimizer.anytime",
    "Flow": "optimizer.result", "PlanResult": "optimizer.result", "Shortage": "optimizer.result",
    "SolveStatus": "optimizer.result",
    "Arcs": "optimizer.scenario", "DistributionCentre": "optimizer.scenario", "Material": "optimizer.scenario",
    "RescueCentre": "optimizer.scenario", "Scenario": "optimizer.scenario", "SupplySite": "optimizer.scenario",
    "known_packs": "optimizer.scenario", "load_scenario": "optimizer.scenario",
}

__all__ = sorted(list(_WHERE) + ["ScenarioError", "DEFAULT_THETA", "INDICATORS", "THETA_FUNCTIONS", "Urgency",
                                 "UrgencyError", "urgency"])


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'optimizer' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
