"""Stock readings: the MQTT payload sites publish (contract v1) and the Kafka records made of it.

MQTT topic ``vr/v1/sites/{site_id}/stock``, payload::

    {"v": 1, "site_id": "S00001", "ts": "2026-11-22T08:00:00.000Z", "seq": 42,
     "readings": [{"material": "medicine", "qty": 120.0, "unit": "box"}]}

The bridge forwards each accepted payload as one :class:`ReadingBatch` record keyed by site id,
with the time it received it; later stages de-duplicate by ``(site_id, seq)``. The payload comes
from devices: fields it does not know are kept (the ``keep`` rule, :mod:`vreserve.schemas.common`).
"""
from __future__ import annotations

import base64
from dataclasses import field
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import PlainSerializer, model_validator
from pydantic.dataclasses import dataclass

from vreserve.schemas.common import (
    MAX_RECORD_BYTES,
    Count,
    Quantity,
    Record,
    SchemaError,
    Text,
    UtcTime,
    count,
    format_ts,
    items,
    kept_extra,
    loads_object,
    once_each,
    parse_ts,
    said,
    text,
)

VERSION = 1
#: Largest MQTT payload accepted, in bytes; a real site sends well under 4 KiB.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_READINGS = 500
#: Largest readings-topic record the stream worker parses, in bytes.
MAX_READINGS_RECORD_BYTES = 2 * MAX_PAYLOAD_BYTES
#: names the Kafka record (:class:`ReadingBatch`) adds next to the report's own fields
_BATCH_KEYS = frozenset({"received_at", "mqtt_topic"})
_READING_KEYS = frozenset({"material", "qty", "unit"})


@dataclass(frozen=True)
class Reading:
    """One material's stock at the site, in the catalogue's ``unit``."""

    material: Text
    qty: Quantity
    unit: text(32)
    #: fields of the reading the contract does not know, kept as they came
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_unknown(cls, obj: Any) -> Any:
        return kept_extra(obj, _READING_KEYS, "reading")

    def to_dict(self) -> dict:
        return {**self.extra, "material": self.material, "qty": self.qty, "unit": self.unit}


@dataclass(frozen=True)
class StockReport(Record):
    """One site's stock at one instant, as published over MQTT."""

    WHAT: ClassVar[str] = "payload"
    MAX_BYTES: ClassVar[int] = MAX_PAYLOAD_BYTES
    UNKNOWN: ClassVar[str] = "keep"
    RESERVED: ClassVar[frozenset[str]] = _BATCH_KEYS

    site_id: Text
    ts: UtcTime
    seq: Count
    readings: items(Reading, MAX_READINGS)
    #: the device's boot counter (optional in the payload, 0 when absent): readings are ordered by
    #: (boot, seq, ts), so a device whose seq restarts after a reboot sends a higher boot
    boot: count(lt=2 ** 62) = 0
    #: top-level fields the contract does not know (a vendor's ``battery_pct``), kept as they came
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @model_validator(mode="after")
    def _materials_once(self) -> "StockReport":
        once_each(self.readings, "readings", "listed twice")
        return self

    def _wire_out(self, payload: dict) -> dict:
        if not self.boot:
            del payload["boot"]
        payload["readings"] = [{**r.pop("extra"), **r} if r["extra"] else r for r in payload["readings"]]
        for r in payload["readings"]:
            r.pop("extra", None)
        return payload

    @classmethod
    def from_json(cls, raw: bytes | str) -> "StockReport":
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise SchemaError(f"payload of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit")
        return cls.from_payload(loads_object(raw, "payload"))


@dataclass(frozen=True)
class ReadingBatch:
    """Kafka record on the readings topic: an accepted :class:`StockReport` plus bridge metadata
    (``received_at``, ``mqtt_topic``) as two more top-level fields of the report's payload."""

    report: StockReport
    received_at: UtcTime
    mqtt_topic: str

    def to_json(self) -> bytes:
        body = self.report.to_payload()
        body["received_at"] = format_ts(self.received_at)
        body["mqtt_topic"] = self.mqtt_topic
        # orjson on the bridge's hot path: every number in a report is validated finite (the
        # report's own fields on construction, kept extras by the safe decoder that parsed them),
        # so its silent NaN -> null cannot happen here
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

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
class DeadLetter(Record):
    """What could not be accepted, with everything needed to inspect or replay it (its original
    bytes travel as ``payload_b64``)."""

    WHAT: ClassVar[str] = "dead-letter record"
    #: carries a rejected record of up to MAX_RECORD_BYTES in base64 (4/3 of it) and its reason
    MAX_BYTES: ClassVar[int] = 2 * MAX_RECORD_BYTES
    UNKNOWN: ClassVar[str] = "ignore"

    source: Text  # "mqtt" or "kafka:<topic>"
    reason: said(4096)
    payload: Annotated[bytes, PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str,
                                              when_used="json")]
    at: UtcTime
    mqtt_topic: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def wire_fields(cls) -> frozenset[str]:
        return super().wire_fields() - {"payload"} | {"payload_b64"}

    def _wire_out(self, payload: dict) -> dict:
        payload["payload_b64"] = payload.pop("payload")  # base64 already (the field's serializer)
        return payload

    @classmethod
    def _wire_in(cls, fields: dict) -> dict:
        fields = dict(fields)
        try:
            fields["payload"] = base64.b64decode(fields.pop("payload_b64", None) or "", validate=True)
        except (ValueError, TypeError):
            raise SchemaError("payload_b64 must be base64 text") from None
        fields["context"] = fields.get("context") or {}
        return fields

    @classmethod
    def from_payload(cls, obj: dict) -> "DeadLetter":
        # any version: a dead letter is read for inspection and replay
        return cls.validate(obj)
