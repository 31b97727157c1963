"""The per-(site, material) state the worker holds, and how one reading changes it.

Pure logic, no I/O. The held value is a plain dict, the reading's row of ``stock_latest`` (which
is where a (re)started worker gets it back from, :mod:`stream.memory`), plus, when folded here,
the reading before it (for :func:`jump_alert`)::

    {"qty": 12.0, "unit": "box", "ts": "<RFC 3339>", "seq": 42, "boot": 3,
     "prev_qty": 30.0, "prev_ts": "<RFC 3339>" | None, "prev_seq": 41 | None}

Order is (boot, seq, ts) (``boot``: the device's boot counter, 0 when it sends none; a state held
before it existed counts as boot 0); ts is compared as its fixed-width RFC 3339 text (no parsing
per reading). A device restart is visible either way: a higher boot moves the state on and raises
a ``device_restart`` alert (info); a seq that goes back with a newer ts and the same boot (a restart
without a boot counter) is ignored, as the order says, and raises a ``seq_regression`` alert
(warning): live stock would otherwise stay stale without a word. A reading not newer than the held one changes nothing, so duplicates and
replays are no-ops. The previous reading is kept so that re-processing the held reading after a
crash (its changelog entry written, its offset not yet committed) derives the same jump alert
again, with the same deterministic id.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from vreserve.schemas.alerts import Alert

from stream.records import ReadingRecord, StockReading


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
    #: a device restart seen in the sequence (``device_restart`` or ``seq_regression``), if any
    restart: Alert | None = None


def apply_reading(held: dict | None, reading: StockReading, jump_share: float | None = None) -> Applied:
    """The new held state for ``reading`` and the jump alert it raises, if any (``jump_share``
    None: none; the worker judges changes against picks and movements instead, vreserve.reconcile)."""
    if held is None:
        state = _state(reading, None)
        return Applied(Outcome.NEW, state, None)
    held_order = (held.get("boot", 0), held["seq"], held["ts"])
    incoming = (reading.boot, reading.seq, reading.ts_text)
    if incoming < held_order:
        return Applied(Outcome.STALE, held, None, restart_alert(held, reading))
    if incoming == held_order:
        if float(held["qty"]) != reading.qty:
            return Applied(Outcome.STALE, held, None)  # conflicting duplicate: the first one wins
        return Applied(Outcome.REPLAY, held, jump_alert(held, reading, jump_share))
    state = _state(reading, held)
    return Applied(Outcome.NEWER, state, jump_alert(state, reading, jump_share), restart_alert(held, reading))


@dataclass
class FoldCounts:
    """How the readings of a batch fell out (the worker's health counters)."""

    newer: int = 0
    replayed: int = 0
    ignored_older: int = 0


def fold_record(held_by_material: dict, record: ReadingRecord, alerts: list[Alert], counts: FoldCounts) -> None:
    """Fold one record's readings into its site's held states (``material -> state``), as
    :func:`apply_reading` without a jump share would: the common case (first or next reading of
    the same boot) inline, every other case through :func:`apply_reading` itself."""
    boot, seq, ts_text = record.boot, record.seq, record.ts_text
    newer = 0
    for i, item in enumerate(record.items):
        material = item.material
        held = held_by_material.get(material)
        if held is None or (held["boot"] == boot
                            and (seq > held["seq"] or (seq == held["seq"] and ts_text > held["ts"]))):
            held_by_material[material] = {"qty": item.qty, "unit": item.unit, "ts": ts_text, "seq": seq, "boot": boot}
            newer += 1
            continue
        applied = apply_reading(held, record.reading(i))
        if applied.outcome is Outcome.NEWER:
            held_by_material[material] = applied.held
            newer += 1
        elif applied.outcome is Outcome.REPLAY:
            counts.replayed += 1
        else:
            counts.ignored_older += 1
        if applied.restart is not None:
            alerts.append(applied.restart)
    counts.newer += newer


def _state(reading: StockReading, previous: dict | None) -> dict:
    return {
        "qty": reading.qty,
        "unit": reading.unit,
        "ts": reading.ts_text,
        "seq": reading.seq,
        "boot": reading.boot,
        "prev_qty": previous["qty"] if previous else None,
        "prev_ts": previous["ts"] if previous else None,
        "prev_seq": previous["seq"] if previous else None,
    }


def restart_alert(held: dict, reading: StockReading) -> Alert | None:
    """The visible signal of a device restart (see the module docstring), or None."""
    held_boot = held.get("boot", 0)
    where = f"{reading.material_id} at site {reading.site_id}"
    if reading.boot > held_boot:
        kind, severity = "device_restart", "info"
        message = (f"{where}: the device restarted (boot {held_boot} -> {reading.boot}, seq {held['seq']} -> "
                   f"{reading.seq}); its readings are taken in (boot, seq) order")
    elif reading.boot == held_boot and reading.seq < held["seq"] and reading.ts_text > held["ts"]:
        kind, severity = "seq_regression", "warning"
        message = (f"{where}: seq went back from {held['seq']} to {reading.seq} with a newer timestamp and "
                   f"the same boot counter ({held_boot}): a device restart without a new `boot`? Its readings "
                   f"are ignored until seq passes {held['seq']}; the device must send a higher `boot` after a "
                   "restart (MQTT contract v1)")
    else:
        return None
    return Alert(
        alert_id=f"{kind}:{reading.site_id}:{reading.material_id}:{reading.boot}:{reading.seq}",
        kind=kind, severity=severity, message=message, at=reading.ts, site_id=reading.site_id,
        material_id=reading.material_id,
        details={"held_boot": held_boot, "held_seq": held["seq"], "held_ts": held["ts"], "boot": reading.boot,
                 "seq": reading.seq, "ts": reading.ts_text},
    )


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
