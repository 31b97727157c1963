"""Risk-weighted audit plans: moved to vreserve/audit_plan.py (shared with the HTTP API); this keeps
the old import path."""
from vreserve.audit_plan import FLOOR, SiteRisk, WeightedSite, draw, weigh

__all__ = ["FLOOR", "SiteRisk", "WeightedSite", "draw", "weigh"]
