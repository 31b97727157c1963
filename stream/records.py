"""Turning readings-topic records into rows: parse, flatten, and say why a record is unusable.

Two parsers, one contract:

* :func:`parse_record` is the worker's: the bridge has already validated every payload against
  the MQTT contract (its version is the guarantee), so the worker checks only the shape its own
  writes rely on (types, ranges, lengths, the key, no separator in ids) after the one safe
  decoder (:func:`vreserve.decode.decode_object`: size, UTF-8, depth, no NUL), and keeps the
  timestamps as the bridge's canonical text instead of re-parsing them. A record that fails gets
  the reason a person reads, and goes to the dead-letter topic.

  Its common case is one compiled pass (:func:`_fast_record`, msgspec with the same bounds):
  taken only for a record with no escape in it at all (so no NUL, control character or id
  separator can hide in a string, and no text needs COPY escaping), no more brackets than its own
  shape has (so no deep nesting in an unknown field) and within the size limit. Anything else,
  and anything msgspec refuses, goes through the checks in Python, which decide and say why: the
  fast pass can only accept what they accept (tests/stream/test_stream_records.py compares them).
* :func:`parse_batch` is the strict contract check (``ReadingBatch.from_json``), for tools and
  tests that take records from anywhere.

Pure functions; the worker does the Kafka and database I/O around them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from vreserve.decode import MAX_DEPTH, decode_object
from vreserve.schemas.common import SchemaError, format_ts, parse_ts
from vreserve.schemas.readings import MAX_READINGS, MAX_READINGS_RECORD_BYTES, ReadingBatch

#: Neither a site id nor a material id may contain this (it separated them in keys, and an id
#: with a control character in it is a device bug worth a dead letter rather than a row).
KEY_SEP = "\x1f"
_MAX_BOOT = 2 ** 62
_MAX_UNIT = 32
_MAX_ID = 128  # as the contract's require_str


@dataclass(frozen=True)
class StockReading:
    """One material's quantity at one site at one instant: one row of ``stock_readings``."""

    site_id: str
    material_id: str
    qty: float
    unit: str
    ts: datetime
    seq: int
    received_at: datetime
    #: ``ts`` as RFC 3339 UTC with milliseconds: fixed width, so it orders as the time does.
    ts_text: str = field(default="", compare=False)
    #: the device's boot counter (0 when it sends none): order is (boot, seq, ts)
    boot: int = 0

    def __post_init__(self) -> None:
        if not self.ts_text:
            object.__setattr__(self, "ts_text", format_ts(self.ts))


_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_ID)]


class Item(msgspec.Struct, gc=False):
    """One reading of a record: material, quantity, unit. (A msgspec struct outside the garbage
    collector's tracking: the worker holds millions of them in passing, and every tracked object
    brings the next full collection pass nearer.) The bounds are :func:`_checked_record`'s."""

    material: _Id
    qty: Annotated[float, msgspec.Meta(ge=0.0, le=sys.float_info.max)]  # finite, not negative
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=_MAX_UNIT)]


class ReadingRecord:
    """One readings-topic record as the worker holds it: a site's report at one instant, its
    readings as :class:`Item` (no object per reading beyond that on the hot path)."""

    __slots__ = ("site_id", "ts", "ts_text", "seq", "boot", "received_text", "items", "plain")

    def __init__(self, site_id: str, ts: datetime, ts_text: str, seq: int, boot: int, received_text: str,
                 items: list[Item], plain: bool = False) -> None:
        self.site_id = site_id
        self.ts = ts
        self.ts_text = ts_text
        self.seq = seq
        self.boot = boot
        self.received_text = received_text
        self.items = items
        #: no text of it needs COPY escaping (its JSON had no escape in it)
        self.plain = plain

    def reading(self, i: int) -> StockReading:
        """The i-th reading as a :class:`StockReading` (for the pure fold's rarer paths)."""
        item = self.items[i]
        return StockReading(self.site_id, item.material, item.qty, item.unit, self.ts, self.seq,
                            parse_ts(self.received_text, "received_at"), self.ts_text, self.boot)

    def readings(self) -> list[StockReading]:
        return [self.reading(i) for i in range(len(self.items))]


def _canonical_ts(value: object, name: str) -> tuple[datetime, str]:
    """(time, fixed-width text). The bridge writes ``YYYY-MM-DDTHH:MM:SS.mmmZ``: taken as it is;
    anything else is parsed strictly and re-formatted (so text order stays time order)."""
    if isinstance(value, str) and len(value) == 24 and value[10] == "T" and value[23] == "Z":
        try:
            return datetime.fromisoformat(value), value
        except ValueError:
            pass
    ts = parse_ts(value, name)
    return ts, format_ts(ts)


def _int_field(obj: dict, name: str, default: int | None, limit: int, reason: str) -> int:
    value = obj.get(name, default)
    if type(value) is not int or value < 0 or value >= limit:
        raise SchemaError(reason)
    return value


def _items(raw_items: object) -> list[Item]:
    if type(raw_items) is not list or not raw_items:
        raise SchemaError("readings must be a non-empty list")
    if len(raw_items) > MAX_READINGS:
        raise SchemaError(f"more than {MAX_READINGS} readings in one payload")
    items = []
    seen: set[str] = set()
    for i, item in enumerate(raw_items):
        if type(item) is not dict:
            raise SchemaError(f"readings[{i}] must be an object")
        material, qty, unit = item.get("material"), item.get("qty"), item.get("unit")
        if type(material) is not str or not material or len(material) > _MAX_ID or KEY_SEP in material:
            raise SchemaError(f"readings[{i}].material must be a non-empty string of at most {_MAX_ID} characters "
                              "without control characters")
        if material in seen:
            raise SchemaError(f"readings[{i}]: material {material!r} listed twice")
        seen.add(material)
        if type(qty) is int:
            qty = float(qty)
        if type(qty) is not float or not math.isfinite(qty):
            raise SchemaError(f"readings[{i}].qty must be a finite number")
        if qty < 0:
            raise SchemaError(f"readings[{i}].qty is negative ({qty:g})")
        if type(unit) is not str or not unit or len(unit) > _MAX_UNIT:
            raise SchemaError(f"readings[{i}].unit must be a non-empty string of at most {_MAX_UNIT} characters")
        items.append(Item(material, qty, unit))
    return items


class _FastRecord(msgspec.Struct, gc=False):
    """The bounds :func:`_checked_record` checks, as msgspec types (unknown fields ignored)."""

    v: Literal[1]
    site_id: _Id
    ts: str
    seq: Annotated[int, msgspec.Meta(ge=0, le=2 ** 63 - 1)]
    readings: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]
    received_at: str
    mqtt_topic: str
    boot: Annotated[int, msgspec.Meta(ge=0, le=_MAX_BOOT - 1)] = 0


_FAST_DECODER = msgspec.json.Decoder(_FastRecord)


def _fast_record(raw: bytes, kafka_key: bytes | None) -> ReadingRecord | None:
    """The record through the compiled pass, or None when the Python checks must decide (see the
    module docstring; None is never a verdict)."""
    if (len(raw) > MAX_READINGS_RECORD_BYTES or b"\\" in raw
            or (brackets := raw.count(b"[") + raw.count(b"{")) >= MAX_DEPTH + MAX_READINGS):
        return None
    try:
        rec = _FAST_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    items = rec.readings
    # brackets: only its own (no nesting in unknown fields); materials: no duplicate
    if brackets != 2 + len(items) or len({i.material for i in items}) != len(items):
        return None
    site_id = rec.site_id
    if kafka_key is not None and kafka_key != site_id.encode():
        return None
    _, received_text = _canonical_ts(rec.received_at, "received_at")  # in the Python checks' order
    ts, ts_text = _canonical_ts(rec.ts, "ts")
    return ReadingRecord(site_id, ts, ts_text, rec.seq, rec.boot, received_text, items, True)


def parse_record(raw: bytes | None, kafka_key: bytes | None) -> ReadingRecord:
    """The worker's shape check of a record the bridge produced (see the module docstring);
    raises :class:`SchemaError` with the reason a person reads."""
    if raw is None:
        raise SchemaError("record has no value (tombstone)")
    if type(raw) is bytes:
        fast = _fast_record(raw, kafka_key)
        if fast is not None:
            return fast
    return _checked_record(raw, kafka_key)


def _checked_record(raw: bytes, kafka_key: bytes | None) -> ReadingRecord:
    """The shape check in Python: the verdict and the reason for every record the fast pass did
    not take."""
    obj = decode_object(raw, "readings record", MAX_READINGS_RECORD_BYTES)  # size, UTF-8, depth, no NUL
    _, received_text = _canonical_ts(obj.get("received_at"), "received_at")
    if not isinstance(obj.get("mqtt_topic"), str):
        raise SchemaError("mqtt_topic must be a string")
    if obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise SchemaError(f"unsupported payload version v={obj.get('v')!r}, expected 1")
    site_id = obj.get("site_id")
    if type(site_id) is not str or not site_id or len(site_id) > _MAX_ID or KEY_SEP in site_id:
        raise SchemaError(f"site_id must be a non-empty string of at most {_MAX_ID} characters without control "
                          "characters")
    if kafka_key is not None:
        try:
            key_text = kafka_key.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError("record key is not UTF-8") from None
        if key_text != site_id:
            # Keyed by another site: per-site ordering (and so de-duplication) would not hold.
            raise SchemaError(f"record key {key_text!r} differs from site_id {site_id!r}")
    ts, ts_text = _canonical_ts(obj.get("ts"), "ts")
    seq = _int_field(obj, "seq", None, 2 ** 63, "seq must be a non-negative integer")
    boot = _int_field(obj, "boot", 0, _MAX_BOOT, "boot must be a non-negative integer (the device's boot counter)")
    return ReadingRecord(site_id, ts, ts_text, seq, boot, received_text, _items(obj.get("readings")))


def parse_batch(raw: bytes | None, kafka_key: bytes | None) -> list[StockReading]:
    """Readings of one record under the strict contract; raises :class:`SchemaError` with the
    reason a person reads."""
    if raw is None:
        raise SchemaError("record has no value (tombstone)")
    batch = ReadingBatch.from_json(raw)
    report = batch.report
    if kafka_key is not None:
        try:
            key_text = kafka_key.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError("record key is not UTF-8") from None
        if key_text != report.site_id:
            raise SchemaError(f"record key {key_text!r} differs from site_id {report.site_id!r}")
    for r in report.readings:
        if KEY_SEP in report.site_id or KEY_SEP in r.material:
            raise SchemaError("site_id or material contains a control character")
    ts_text = format_ts(report.ts)
    return [
        StockReading(report.site_id, r.material, r.qty, r.unit, report.ts, report.seq, batch.received_at, ts_text,
                     report.boot)
        for r in report.readings
    ]
