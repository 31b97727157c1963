"""The names a scenario file may use and its error: the light part of :mod:`vreserve.scenario`.

Apart so that the optimizer's package (imported by ``vreserve --help`` through its commands) can
share them without loading pydantic and the scenario's models at start-up.
"""
from __future__ import annotations

from typing import Literal, get_args

#: The five urgency indicators a material may state (``optimizer.urgency`` says which way each points).
INDICATOR_NAMES = ("consumption_rate", "reproduction_rate", "durability", "danger_to_life", "irreplaceability")
#: The shortage coefficient functions theta = f(urgency) a scenario may name (defined in ``optimizer.urgency``).
ThetaName = Literal["exp", "exp2", "quadratic", "square", "linear"]
THETA_NAMES: tuple[str, ...] = get_args(ThetaName)
DEFAULT_THETA = "exp"


class ScenarioError(ValueError):
    """The scenario is malformed: the message says where and why."""
