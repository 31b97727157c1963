"""Tables for supervision's commands: the project's one formatter, :func:`vreserve.tables.table`."""
from __future__ import annotations

from vreserve.tables import table

__all__ = ["table"]
