"""Audit records: counted quantities an auditor submits for one site (CLI or the audits topic).

Kafka topic ``audits`` (keyed by site id), payload::

    {"v": 1, "audit_id": "A-2026-11-22-0001", "site_id": "S00001", "auditor": "inspector-7",
     "at": "2026-11-22T08:00:00.000Z",
     "counts": [{"material": "masks", "counted_qty": 800, "unit": "box"}]}

``audit_id`` makes submissions idempotent: the same audit submitted twice counts once. Structure is
checked here; registry checks (known site, known material, unit) are supervision's.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from vreserve.schemas.common import Quantity, Record, Text, UtcTime, check_keys, items, once_each, text

VERSION = 1
MAX_COUNTS = 500
_COUNT_KEYS = frozenset({"material", "counted_qty", "unit"})


@dataclass(frozen=True)
class AuditCount:
    """One material as counted, in ``unit`` (the catalogue's when omitted)."""

    material: Text
    counted_qty: Quantity
    unit: text(32) | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_only(cls, obj: Any) -> Any:
        if isinstance(obj, dict):
            check_keys(obj, _COUNT_KEYS, "count")
        return obj

    def to_dict(self) -> dict:
        d: dict = {"material": self.material, "counted_qty": self.counted_qty}
        if self.unit is not None:
            d["unit"] = self.unit
        return d


@dataclass(frozen=True)
class AuditRecord(Record):
    """One physical count of one site by one auditor at one time."""

    WHAT: ClassVar[str] = "audit record"

    audit_id: Text
    site_id: Text
    auditor: Text
    at: UtcTime
    counts: items(AuditCount, MAX_COUNTS)

    @model_validator(mode="after")
    def _materials_once(self) -> "AuditRecord":
        once_each(self.counts, "counts", "counted twice")
        return self

    def _wire_out(self, payload: dict) -> dict:
        payload["counts"] = [c.to_dict() for c in self.counts]
        return payload
