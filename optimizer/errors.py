"""Errors of the optimizer's input (one place, so urgency and scenario errors share a base)."""


class ScenarioError(ValueError):
    """The scenario is malformed: the message says where and why."""
