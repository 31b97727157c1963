"""Stock readings: the MQTT payload sites publish (contract v1) and the Kafka records made of it.

MQTT topic ``vr/v1/sites/{site_id}/stock``, payload::

    {"v": 1, "site_id": "S00001", "ts": "2026-11-22T08:00:00.000Z", "seq": 42,
     "readings": [{"material": "medicine", "qty": 120.0, "unit": "box"}]}

The bridge forwards each accepted payload as one :class:`ReadingBatch` record keyed by site id,
with the time it received it; later stages de-duplicate by ``(site_id, seq)``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from vreserve.schemas.common import (
    MAX_RECORD_BYTES,
    SchemaError,
    check_version,
    dumps,
    finite_number,
    format_ts,
    loads_object,
    parse_ts,
    require_str,
    split_extra,
)

VERSION = 1
#: Largest MQTT payload accepted, in bytes; a real site sends well under 4 KiB.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_READINGS = 500
#: Largest readings-topic record the stream worker parses, in bytes.
MAX_READINGS_RECORD_BYTES = 2 * MAX_PAYLOAD_BYTES
_STOCK_KEYS = {"v", "site_id", "ts", "seq", "boot", "readings"}
_READING_KEYS = {"material", "qty", "unit"}
#: names the Kafka record (:class:`ReadingBatch`) adds next to the report's own fields
_BATCH_KEYS = frozenset({"received_at", "mqtt_topic"})


@dataclass(frozen=True)
class Reading:
    material: str
    qty: float
    unit: str
    #: fields of the reading the contract does not know, kept as they came (see split_extra)
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {**self.extra, "material": self.material, "qty": self.qty, "unit": self.unit}


@dataclass(frozen=True)
class StockReport:
    """One site's stock at one instant, as published over MQTT."""

    site_id: str
    ts: datetime
    seq: int
    readings: tuple[Reading, ...]
    #: the device's boot counter (optional in the payload, 0 when absent): readings are ordered by
    #: (boot, seq, ts), so a device whose seq restarts after a reboot sends a higher boot
    boot: int = 0
    #: top-level fields the contract does not know (a vendor's ``battery_pct``), kept as they came
    extra: dict = field(default_factory=dict, compare=False)

    def to_payload(self) -> dict:
        return {
            **self.extra,
            "v": VERSION,
            "site_id": self.site_id,
            "ts": format_ts(self.ts),
            "seq": self.seq,
            **({"boot": self.boot} if self.boot else {}),
            "readings": [r.to_dict() for r in self.readings],
        }

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_payload(cls, obj: dict) -> "StockReport":
        """Strict validation of the known fields; unknown ones are kept (contract v1's versioning
        rule, :func:`split_extra`). Registry checks (known site/material) are the caller's."""
        check_version(obj, VERSION, "payload")
        extra = split_extra(obj, _STOCK_KEYS, "payload", reserved=_BATCH_KEYS)
        site_id = require_str(obj, "site_id")
        ts = parse_ts(obj.get("ts"))
        seq = obj.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise SchemaError("seq must be a non-negative integer")
        boot = obj.get("boot", 0)
        if isinstance(boot, bool) or not isinstance(boot, int) or boot < 0 or boot >= 2 ** 62:
            raise SchemaError("boot must be a non-negative integer (the device's boot counter)")
        items = obj.get("readings")
        if not isinstance(items, list) or not items:
            raise SchemaError("readings must be a non-empty list")
        if len(items) > MAX_READINGS:
            raise SchemaError(f"more than {MAX_READINGS} readings in one payload")
        readings = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise SchemaError(f"readings[{i}] must be an object")
            item_extra = split_extra(item, _READING_KEYS, f"readings[{i}]")
            material = require_str(item, "material")
            if material in seen:
                raise SchemaError(f"readings[{i}]: material {material!r} listed twice")
            seen.add(material)
            qty = finite_number(item.get("qty"), f"readings[{i}].qty")
            if qty < 0:
                raise SchemaError(f"readings[{i}].qty is negative ({qty:g})")
            unit = require_str(item, "unit", max_len=32)
            readings.append(Reading(material, qty, unit, item_extra))
        return cls(site_id=site_id, ts=ts, seq=seq, readings=tuple(readings), boot=boot, extra=extra)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "StockReport":
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise SchemaError(f"payload of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit")
        return cls.from_payload(loads_object(raw, "payload"))


@dataclass(frozen=True)
class ReadingBatch:
    """Kafka record on the readings topic: an accepted :class:`StockReport` plus bridge metadata."""

    report: StockReport
    received_at: datetime
    mqtt_topic: str

    def to_json(self) -> bytes:
        body = self.report.to_payload()
        body["received_at"] = format_ts(self.received_at)
        body["mqtt_topic"] = self.mqtt_topic
        return dumps(body)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ReadingBatch":
        # the bridge re-encodes at most a MAX_PAYLOAD_BYTES payload: twice that is already wrong
        obj = loads_object(raw, "readings record", MAX_READINGS_RECORD_BYTES)
        received_at = parse_ts(obj.pop("received_at", None), "received_at")
        mqtt_topic = obj.pop("mqtt_topic", None)
        if not isinstance(mqtt_topic, str):
            raise SchemaError("mqtt_topic must be a string")
        return cls(StockReport.from_payload(obj), received_at, mqtt_topic)


@dataclass(frozen=True)
class DeadLetter:
    """What could not be accepted, with everything needed to inspect or replay it."""

    source: str  # "mqtt" or "kafka:<topic>"
    reason: str
    payload: bytes
    at: datetime
    mqtt_topic: str | None = None
    context: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return dumps(
            {
                "v": VERSION,
                "source": self.source,
                "reason": self.reason,
                "payload_b64": base64.b64encode(self.payload).decode(),
                "at": format_ts(self.at),
                "mqtt_topic": self.mqtt_topic,
                "context": self.context,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DeadLetter":
        # carries a rejected record of up to MAX_RECORD_BYTES in base64 (4/3 of it) and its reason
        obj = loads_object(raw, "dead-letter record", 2 * MAX_RECORD_BYTES)
        return cls(
            source=require_str(obj, "source"),
            reason=require_str(obj, "reason", max_len=4096),
            payload=base64.b64decode(obj.get("payload_b64") or ""),
            at=parse_ts(obj.get("at"), "at"),
            mqtt_topic=obj.get("mqtt_topic"),
            context=obj.get("context") or {},
        )
