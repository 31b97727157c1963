"""Optimizer: pure model code. A scenario in, a plan out; no Kafka, MQTT or SQL here.

Public API (other stages import only these names):
``Scenario``, ``load_scenario``, ``ScenarioError``, ``plan``, ``Planner``, ``PlanResult``,
``SolveStatus``, ``Flow``, ``Shortage``, ``Urgency``, ``urgency``, ``THETA_FUNCTIONS``.
"""
from optimizer.model import Planner, plan
from optimizer.result import Flow, PlanResult, Shortage, SolveStatus
from optimizer.scenario import (Arcs, DistributionCentre, Material, RescueCentre, Scenario, ScenarioError,
                                SupplySite, known_packs, load_scenario)
from optimizer.urgency import DEFAULT_THETA, INDICATORS, THETA_FUNCTIONS, Urgency, UrgencyError, urgency

__all__ = [
    "Arcs", "DEFAULT_THETA", "DistributionCentre", "Flow", "INDICATORS", "Material", "PlanResult", "Planner",
    "RescueCentre", "Scenario", "ScenarioError", "Shortage", "SolveStatus", "SupplySite", "THETA_FUNCTIONS",
    "Urgency", "UrgencyError", "known_packs", "load_scenario", "plan", "urgency",
]
