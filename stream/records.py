"""Turning readings-topic records into rows: parse, flatten, and say why a record is unusable.

Pure functions; the agent does the Kafka and database I/O around them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from vreserve.schemas.common import SchemaError, format_ts
from vreserve.schemas.readings import ReadingBatch

#: Separator of the (site, material) table key; neither id may contain it.
KEY_SEP = "\x1f"


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

    @property
    def key(self) -> str:
        return table_key(self.site_id, self.material_id)


def table_key(site_id: str, material_id: str) -> str:
    return f"{site_id}{KEY_SEP}{material_id}"


def split_key(key: str) -> tuple[str, str]:
    site_id, material_id = key.split(KEY_SEP, 1)
    return site_id, material_id


def parse_batch(raw: bytes | None, kafka_key: bytes | None) -> list[StockReading]:
    """Readings of one record; raises :class:`SchemaError` with the reason a person reads."""
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
            # Keyed by another site: per-site ordering (and so de-duplication) would not hold.
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
