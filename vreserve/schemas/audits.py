"""Audit records: counted quantities an auditor submits for one site (CLI or the audits topic).

Kafka topic ``audits`` (keyed by site id), payload::

    {"v": 1, "audit_id": "A-2026-11-22-0001", "site_id": "S00001", "auditor": "inspector-7",
     "at": "2026-11-22T08:00:00.000Z",
     "counts": [{"material": "masks", "counted_qty": 800, "unit": "box"}]}

``audit_id`` makes submissions idempotent: the same audit submitted twice counts once. Structure is
checked here; registry checks (known site, known material, unit) are supervision's.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from vreserve.schemas.common import (
    SchemaError,
    check_keys,
    check_version,
    dumps,
    finite_number,
    format_ts,
    loads_object,
    parse_ts,
    require_str,
)

VERSION = 1
MAX_COUNTS = 500
_KEYS = {"v", "audit_id", "site_id", "auditor", "at", "counts"}
_COUNT_KEYS = {"material", "counted_qty", "unit"}


@dataclass(frozen=True)
class AuditCount:
    material: str
    counted_qty: float
    unit: str | None = None

    def to_dict(self) -> dict:
        d: dict = {"material": self.material, "counted_qty": self.counted_qty}
        if self.unit is not None:
            d["unit"] = self.unit
        return d


@dataclass(frozen=True)
class AuditRecord:
    """One physical count of one site by one auditor at one time."""

    audit_id: str
    site_id: str
    auditor: str
    at: datetime
    counts: tuple[AuditCount, ...]

    def to_payload(self) -> dict:
        return {
            "v": VERSION,
            "audit_id": self.audit_id,
            "site_id": self.site_id,
            "auditor": self.auditor,
            "at": format_ts(self.at),
            "counts": [c.to_dict() for c in self.counts],
        }

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_payload(cls, obj: dict) -> "AuditRecord":
        check_keys(obj, _KEYS)
        check_version(obj, VERSION, "audit record")
        audit_id = require_str(obj, "audit_id")
        site_id = require_str(obj, "site_id")
        auditor = require_str(obj, "auditor")
        at = parse_ts(obj.get("at"), "at")
        items = obj.get("counts")
        if not isinstance(items, list) or not items:
            raise SchemaError("counts must be a non-empty list")
        if len(items) > MAX_COUNTS:
            raise SchemaError(f"more than {MAX_COUNTS} counts in one audit")
        counts = []
        seen = set()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise SchemaError(f"counts[{i}] must be an object")
            check_keys(item, _COUNT_KEYS, f"counts[{i}]")
            material = require_str(item, "material")
            if material in seen:
                raise SchemaError(f"counts[{i}]: material {material!r} counted twice")
            seen.add(material)
            qty = finite_number(item.get("counted_qty"), f"counts[{i}].counted_qty")
            if qty < 0:
                raise SchemaError(f"counts[{i}].counted_qty must be >= 0, got {qty:g}")
            unit = item.get("unit")
            if unit is not None and (not isinstance(unit, str) or not unit):
                raise SchemaError(f"counts[{i}].unit must be a non-empty string when given")
            counts.append(AuditCount(material, qty, unit))
        return cls(audit_id, site_id, auditor, at, tuple(counts))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "AuditRecord":
        return cls.from_payload(loads_object(raw, "audit record"))
