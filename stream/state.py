"""The per-(site, material) state the worker holds, and how one reading changes it.

Pure logic, no I/O. The held value is a plain JSON dict (it lives in a Faust table whose
changelog is a Kafka topic)::

    {"qty": 12.0, "unit": "box", "ts": "<RFC 3339>", "seq": 42,
     "prev_qty": 30.0, "prev_ts": "<RFC 3339>" | None, "prev_seq": 41 | None}

Order is (seq, ts); ts is compared as its fixed-width RFC 3339 text (no parsing per reading). A reading not newer than the held one changes nothing, so duplicates and
replays are no-ops. The previous reading is kept so that re-processing the held reading after a
crash (its changelog entry written, its offset not yet committed) derives the same jump alert
again, with the same deterministic id.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from vreserve.schemas.alerts import Alert

from stream.records import StockReading


class Outcome(enum.Enum):
    NEW = "new"            # first reading of this (site, material)
    NEWER = "newer"        # moved the held state forward
    REPLAY = "replay"      # the very reading already held
    STALE = "stale"        # older than the held reading (out of order or duplicate): ignored


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    held: dict            # the state to hold afterwards (unchanged unless NEW/NEWER)
    jump: Alert | None


def apply_reading(held: dict | None, reading: StockReading, jump_share: float | None = None) -> Applied:
    """The new held state for ``reading`` and the jump alert it raises, if any (``jump_share``
    None: none; the worker judges changes against picks and movements instead, vreserve.reconcile)."""
    if held is None:
        state = _state(reading, None)
        return Applied(Outcome.NEW, state, None)
    held_order = (held["seq"], held["ts"])
    incoming = (reading.seq, reading.ts_text)
    if incoming < held_order:
        return Applied(Outcome.STALE, held, None)
    if incoming == held_order:
        if float(held["qty"]) != reading.qty:
            return Applied(Outcome.STALE, held, None)  # conflicting duplicate: the first one wins
        return Applied(Outcome.REPLAY, held, jump_alert(held, reading, jump_share))
    state = _state(reading, held)
    return Applied(Outcome.NEWER, state, jump_alert(state, reading, jump_share))


def _state(reading: StockReading, previous: dict | None) -> dict:
    return {
        "qty": reading.qty,
        "unit": reading.unit,
        "ts": reading.ts_text,
        "seq": reading.seq,
        "prev_qty": previous["qty"] if previous else None,
        "prev_ts": previous["ts"] if previous else None,
        "prev_seq": previous["seq"] if previous else None,
    }


def jump_alert(state: dict, reading: StockReading, jump_share: float | None) -> Alert | None:
    """A jump alert when the change from the previous reading exceeds ``jump_share`` of it."""
    prev = state.get("prev_qty")
    if jump_share is None or prev is None or state.get("prev_seq") is None:
        return None
    change = reading.qty - float(prev)
    share = abs(change) / max(float(prev), 1.0)
    if share <= jump_share:
        return None
    direction = "rose" if change > 0 else "fell"
    return Alert(
        alert_id=f"jump:{reading.site_id}:{reading.material_id}:{reading.seq}",
        kind="jump",
        severity="warning",
        message=(
            f"{reading.material_id} at site {reading.site_id} {direction} from {float(prev):g} to "
            f"{reading.qty:g} {reading.unit} between consecutive readings ({share:.0%} > "
            f"{jump_share:.0%}): suspected sensor fault or stock recorded without goods"
        ),
        at=reading.ts,
        site_id=reading.site_id,
        material_id=reading.material_id,
        details={
            "prev_qty": float(prev), "qty": reading.qty, "unit": reading.unit,
            "prev_seq": state["prev_seq"], "seq": reading.seq, "prev_ts": state["prev_ts"],
            "share": round(share, 6), "threshold": jump_share,
        },
    )
