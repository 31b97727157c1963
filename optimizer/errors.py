"""Errors of the optimizer's input: the scenario contract's error (one base, so urgency, solver and
scenario errors are caught alike)."""
from vreserve.scenario_names import ScenarioError

__all__ = ["ScenarioError"]
