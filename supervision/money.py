"""Money helpers: moved to vreserve/money.py (shared with the HTTP API); this keeps the old import path."""
from vreserve.money import fmt_qty, minor, to_decimal

__all__ = ["fmt_qty", "minor", "to_decimal"]
