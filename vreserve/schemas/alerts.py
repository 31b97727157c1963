"""Alerts: the record on the alerts topic, mirroring a row of the ``alerts`` table.

Keyed by site id (stale, unexplained changes, audit findings) or grid cell (low_stock). ``alert_id`` is deterministic, so a replay
or a republished alert never makes a second one: consumers upsert by ``alert_id``. An alert is
published once when raised and once more when resolved (then ``resolved_at`` is set).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from vreserve.schemas.common import SchemaError, check_version, dumps, format_ts, loads_object, parse_ts, require_str

VERSION = 1
#: jump: raw change between readings (no longer raised by the stream worker; kept for old records);
#: unexplained_change / pick_not_reflected: vreserve.reconcile; audit_discrepancy: supervision.
KINDS = ("stale", "low_stock", "jump", "unexplained_change", "pick_not_reflected", "audit_discrepancy")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    alert_id: str
    kind: str
    severity: str
    message: str
    at: datetime
    site_id: str | None = None
    grid_cell: str | None = None
    material_id: str | None = None
    details: dict = field(default_factory=dict)
    resolved_at: datetime | None = None

    @property
    def key(self) -> str:
        """Kafka key: the site for site alerts, the grid cell for cell alerts."""
        return self.site_id or self.grid_cell or self.material_id or self.alert_id

    def to_payload(self) -> dict:
        return {
            "v": VERSION,
            "alert_id": self.alert_id,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "at": format_ts(self.at),
            "site_id": self.site_id,
            "grid_cell": self.grid_cell,
            "material_id": self.material_id,
            "details": self.details,
            "resolved_at": format_ts(self.resolved_at) if self.resolved_at else None,
        }

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Alert":
        obj = loads_object(raw, "alert record")
        check_version(obj, VERSION, "alert")
        severity = require_str(obj, "severity")
        if severity not in SEVERITIES:
            raise SchemaError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        details = obj.get("details") or {}
        if not isinstance(details, dict):
            raise SchemaError("details must be an object")
        resolved = obj.get("resolved_at")
        return cls(
            alert_id=require_str(obj, "alert_id", max_len=512),
            kind=require_str(obj, "kind"),
            severity=severity,
            message=require_str(obj, "message", max_len=4096),
            at=parse_ts(obj.get("at"), "at"),
            site_id=obj.get("site_id"),
            grid_cell=obj.get("grid_cell"),
            material_id=obj.get("material_id"),
            details=details,
            resolved_at=parse_ts(resolved, "resolved_at") if resolved is not None else None,
        )
