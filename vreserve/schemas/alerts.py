"""Alerts: the record on the alerts topic, mirroring a row of the ``alerts`` table.

Keyed by site id (stale, unexplained changes, audit findings) or grid cell (low_stock). ``alert_id`` is deterministic, so a replay
or a republished alert never makes a second one: consumers upsert by ``alert_id``. An alert is
published once when raised and once more when resolved (then ``resolved_at`` is set).
"""
from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar, Literal

from pydantic import field_validator
from pydantic.dataclasses import dataclass

from vreserve.schemas.common import Record, Text, UtcTime, said, text

VERSION = 1
#: jump: raw change between readings (no longer raised by the stream worker; kept for old records);
#: unexplained_change / pick_not_reflected: vreserve.reconcile; audit_discrepancy: supervision.
KINDS = ("stale", "low_stock", "jump", "unexplained_change", "pick_not_reflected", "audit_discrepancy")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert(Record):
    """One alert as raised (and, once more, as resolved). Fields a reader does not know are ignored."""

    WHAT: ClassVar[str] = "alert"
    UNKNOWN: ClassVar[str] = "ignore"

    alert_id: text(512)
    kind: Text
    severity: Literal["info", "warning", "critical"]
    message: said(4096)
    at: UtcTime
    site_id: str | None = None
    grid_cell: str | None = None
    material_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    resolved_at: UtcTime | None = None

    @field_validator("details", mode="before")
    @classmethod
    def _no_details(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def key(self) -> str:
        """Kafka key: the site for site alerts, the grid cell for cell alerts."""
        return self.site_id or self.grid_cell or self.material_id or self.alert_id
