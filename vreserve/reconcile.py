"""Explained vs unexplained stock changes: the guard against "numbers without goods" that does not
cry wolf at the system's own dispatches.

Every change between two consecutive readings of a (site, material) is reconciled against what the
system knows should change it, in the interval ``(previous reading ts, reading ts]``:

* **picks** the site answered as handed over: the first ``in_transit`` status of a supply-leg
  order from the site, with the picked quantity (the carrier's figure, from the site's answer);
* **deliveries into the site**: ``delivered`` statuses of orders whose destination is the site;
* **declared movements** the owner reported (``stock_movements``: consumption, replenishment).

``expected = previous - picked + received + declared`` and ``unexplained = reading - expected``.
Only the remainder is judged (:func:`judge`):

* ``pick_not_reflected`` (critical): a pick was answered as handed over but the reading still shows
  more than ``pick_share`` of it: numbers without goods in the exact sense (or a stuck sensor);
* ``unexplained_drop`` / ``unexplained_rise``: the remainder exceeds the tolerance
  (``max(tolerance_units, tolerance_share x max(previous, expected))``): goods gone with no pick,
  or stock appearing with no receipt. Both raise an ``unexplained_change`` alert.

Timing: movements and readings both carry the site's own clock, so a pick is reflected by the
first reading at or after its time. Picks reach the database through the carrier and the
dispatcher, seconds after the reading that shows them, so a reading is judged only once it is
``settle_s`` old; an alert whose explanation arrives even later is resolved by the system when the
next check finds it explained (:data:`REJUDGE_OPEN`).

Pure judgement (:func:`judge`, :func:`alert_for`) in the middle; the SQL below feeds it and stores
what it decided, inside the stream worker's periodic checks (one transaction, advisory lock).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.types.json import Jsonb

from vreserve.schemas.alerts import Alert

#: Alert kinds this module raises; the audit plan weighs only these findings.
UNEXPLAINED_CHANGE = "unexplained_change"
PICK_NOT_REFLECTED = "pick_not_reflected"
ABOVE_CAPACITY = "above_capacity"
FINDING_KINDS = (UNEXPLAINED_CHANGE, PICK_NOT_REFLECTED, ABOVE_CAPACITY)
MOVEMENT_KINDS = ("consumption", "replenishment")


@dataclass(frozen=True)
class Policy:
    """How much is noise, and how long to wait for the explanations to arrive."""

    #: A reading is judged once it is this old (picks arrive through carrier + dispatcher).
    settle_s: float = 10.0
    #: An unexplained remainder within max(units, share x max(previous, expected)) is noise
    #: (sensor rounding, slow consumption between readings).
    tolerance_units: float = 1.0
    tolerance_share: float = 0.1
    #: A pick is "not reflected" when the reading still shows more than this share of it.
    pick_share: float = 0.5
    #: An unexplained change waits (up to this long after its reading) while a supply order from
    #: the site and material is still open / accepted in the database (its pick status may be on
    #: its way: the dispatcher records statuses between solves), or while its reading is the
    #: newest settled one and a movement carries its very millisecond (the next reading may show
    #: that the movement came just after it: two opposite remainders that cancel are explained).
    pending_wait_s: float = 120.0
    #: A (site, material) never reconciled before is judged from this far back (its older
    #: history is not: the first pass after deploying on a full database stays small).
    first_lookback_s: float = 300.0


@dataclass(frozen=True)
class StockChange:
    """Two consecutive readings of one (site, material) and the movements between them."""

    site_id: str
    material_id: str
    grid_cell: str | None
    unit: str
    prev_seq: int
    prev_ts: datetime
    prev_qty: float
    seq: int
    ts: datetime
    qty: float
    picked: float = 0.0       # units the site answered as handed over (positive)
    received: float = 0.0     # units delivered into the site (positive)
    declared: float = 0.0     # owner-declared movements, signed (replenishment +, consumption -)
    explained_by: list = field(default_factory=list)  # [{"kind", "ref", "qty", "at"}]
    capacity: float | None = None  # the site's physical capacity for the material (contract_site_terms)


@dataclass(frozen=True)
class Judgement:
    verdict: str          # explained, unexplained_drop, unexplained_rise, pick_not_reflected
    expected: float
    unexplained: float
    tolerance: float


def judge(c: StockChange, policy: Policy = Policy()) -> Judgement:
    """What the reading should have been, and whether the remainder is beyond noise."""
    expected = c.prev_qty - c.picked + c.received + c.declared
    unexplained = c.qty - expected
    tolerance = max(policy.tolerance_units, policy.tolerance_share * max(c.prev_qty, expected, 0.0))
    if c.picked > 0 and unexplained >= max(policy.tolerance_units, policy.pick_share * c.picked) - 1e-9:
        verdict = "pick_not_reflected"
    elif c.capacity is not None and c.qty > c.capacity + policy.tolerance_units + 1e-9:
        verdict = "above_capacity"
    elif abs(unexplained) > tolerance + 1e-9:
        verdict = "unexplained_drop" if unexplained < 0 else "unexplained_rise"
    else:
        verdict = "explained"
    return Judgement(verdict, expected, unexplained, tolerance)


def _explanation(c: StockChange) -> str:
    parts = []
    if c.picked:
        refs = ", ".join(m["ref"] for m in c.explained_by if m["kind"] == "pick")
        parts.append(f"- {c.picked:g} picked ({refs})")
    if c.received:
        parts.append(f"+ {c.received:g} delivered in")
    if c.declared:
        parts.append(f"{'+' if c.declared > 0 else '-'} {abs(c.declared):g} declared by the owner")
    return " ".join(parts) if parts else "nothing recorded"


def alert_for(c: StockChange, j: Judgement) -> Alert | None:
    """The alert for an unexplained remainder (None when the change is explained)."""
    if j.verdict == "explained":
        return None
    u = c.unit
    base = (f"{c.material_id} at site {c.site_id}: reading {c.qty:g} {u} (seq {c.seq}), expected {j.expected:g} {u} "
            f"= previous {c.prev_qty:g} {_explanation(c)}")
    if j.verdict == "pick_not_reflected":
        kind, severity = PICK_NOT_REFLECTED, "critical"
        message = (f"{base}: the site answered {c.picked:g} {u} as handed over but {j.unexplained:g} {u} of it still "
                   "shows: numbers without goods, or a stuck sensor")
    elif j.verdict == "above_capacity":
        kind, severity = ABOVE_CAPACITY, "critical"
        message = (f"{base}: {c.qty:g} {u} is above the site's physical capacity of {c.capacity:g} {u} "
                   "in its contract: numbers without goods, or a sensor fault")
    else:
        kind = UNEXPLAINED_CHANGE
        big = abs(j.unexplained) >= 0.5 * max(c.prev_qty, j.expected, 1.0)
        severity = "critical" if big else "warning"
        what = ("a drop with no pick, delivery or declared consumption" if j.verdict == "unexplained_drop"
                else "a rise with no receipt or declared replenishment")
        message = f"{base}: {abs(j.unexplained):g} {u} unexplained (tolerance {j.tolerance:g} {u}), {what}"
    return Alert(
        alert_id=f"{kind}:{c.site_id}:{c.material_id}:{c.seq}", kind=kind, severity=severity, message=message,
        at=c.ts, site_id=c.site_id, grid_cell=c.grid_cell, material_id=c.material_id,
        details={"verdict": j.verdict, "qty": c.qty, "unit": u, "seq": c.seq, "ts": c.ts.isoformat(),
                 "prev_qty": c.prev_qty, "prev_seq": c.prev_seq, "prev_ts": c.prev_ts.isoformat(),
                 "expected_qty": j.expected, "unexplained_qty": j.unexplained, "tolerance_qty": j.tolerance,
                 "picked_qty": c.picked, "received_qty": c.received, "declared_qty": c.declared,
                 "capacity_qty": c.capacity, "explained_by": c.explained_by})


# ---------------------------------------------------------------------------------------- SQL
#: Every movement into or out of a site since %(since)s: (site_id, material_id, at, qty signed, kind, ref).
MOVES_SQL = """
    (SELECT DISTINCT ON (e.order_id) o.origin AS site_id, o.material_id, e.at, -e.qty::float8 AS qty,
            'pick'::text AS kind, o.order_id AS ref
     FROM order_status_events e JOIN dispatch_orders o ON o.order_id = e.order_id
     WHERE e.status = 'in_transit' AND e.qty IS NOT NULL AND e.qty > 0 AND o.leg = 'supply' AND e.at > {since}
     ORDER BY e.order_id, e.at)
    UNION ALL
    (SELECT DISTINCT ON (e.order_id) o.destination, o.material_id, e.at, coalesce(e.qty, o.qty)::float8,
            'delivery', o.order_id
     FROM order_status_events e JOIN dispatch_orders o ON o.order_id = e.order_id
     JOIN sites ds ON ds.site_id = o.destination
     WHERE e.status = 'delivered' AND e.at > {since}
     ORDER BY e.order_id, e.at)
    UNION ALL
    SELECT m.site_id, m.material_id, m.at,
           (CASE WHEN m.kind = 'consumption' THEN -m.qty ELSE m.qty END)::float8, m.kind, m.movement_id
    FROM stock_movements m WHERE m.at > {since}
"""

#: A cursor only moves forward, in the readings' (ts, seq) order.
CURSOR_FORWARD_ONLY = """ON CONFLICT (site_id, material_id) DO UPDATE SET ts = EXCLUDED.ts, seq = EXCLUDED.seq
WHERE (EXCLUDED.ts, EXCLUDED.seq) > (c.ts, c.seq)
"""

#: Consecutive-reading pairs ready to judge (reading older than settle_s, newer than the key's
#: cursor), with their movements; only pairs that moved beyond noise or had movements.
PAIRS_SQL = """
WITH todo AS (
    SELECT sl.site_id, sl.material_id,
           coalesce(c.ts, now() - make_interval(secs => %(lookback_s)s)) AS from_ts,
           coalesce(c.seq, 9223372036854775807) AS from_seq  -- no cursor: every reading after from_ts
    FROM stock_latest sl LEFT JOIN reconcile_cursor c USING (site_id, material_id)
    WHERE (sl.ts, sl.seq) > (coalesce(c.ts, '-infinity'::timestamptz), coalesce(c.seq, 0))
), pairs AS (
    SELECT r.site_id, r.material_id, r.unit, r.seq, r.ts, r.qty::float8 AS qty, t.from_ts, t.from_seq,
           lag(r.seq) OVER w AS prev_seq, lag(r.ts) OVER w AS prev_ts, lag(r.qty::float8) OVER w AS prev_qty,
           max(r.ts) OVER (PARTITION BY r.site_id, r.material_id) AS last_ts
    FROM todo t JOIN stock_readings r ON r.site_id = t.site_id AND r.material_id = t.material_id
         AND r.ts >= t.from_ts AND r.ts <= now() - make_interval(secs => %(settle_s)s)
    WINDOW w AS (PARTITION BY r.site_id, r.material_id ORDER BY r.ts, r.seq)
), newest AS (  -- each key's newest settled reading seen here: where ADVANCE_CURSOR moves its cursor
    INSERT INTO reconcile_newest (site_id, material_id, ts, seq)
    SELECT DISTINCT ON (site_id, material_id) site_id, material_id, ts, seq FROM pairs
    ORDER BY site_id, material_id, ts DESC, seq DESC
), moves AS (""" + MOVES_SQL.format(since="(SELECT min(from_ts) FROM todo)") + """
), flagged AS (  -- pairs with a movement in them, or right after a reading stamped on a movement's ms
    SELECT p.site_id, p.material_id, p.ts
    FROM pairs p JOIN moves m ON m.site_id = p.site_id AND m.material_id = p.material_id
                             AND m.at > p.prev_ts AND m.at <= p.ts
    UNION
    SELECT p.site_id, p.material_id, p.ts
    FROM pairs p JOIN moves m ON m.site_id = p.site_id AND m.material_id = p.material_id AND m.at = p.prev_ts
), capacity AS (
    SELECT c.site_id, c.material_id, min(t.capacity_qty)::float8 AS capacity
    FROM contracts c JOIN contract_site_terms t ON t.contract_id = c.contract_id
    WHERE c.valid_from <= current_date AND c.valid_to >= current_date AND t.capacity_qty IS NOT NULL
    GROUP BY c.site_id, c.material_id
), cand AS (  -- only these are grouped with their movements (most pairs are neither)
    SELECT p.*, cap.capacity FROM pairs p
    LEFT JOIN capacity cap ON cap.site_id = p.site_id AND cap.material_id = p.material_id
    WHERE p.prev_ts IS NOT NULL AND (p.ts, p.seq) > (p.from_ts, p.from_seq)
      AND (abs(p.qty - p.prev_qty) > greatest(%(tol_units)s, %(tol_share)s * greatest(p.prev_qty, p.qty))
           OR p.qty > cap.capacity
           OR (p.site_id, p.material_id, p.ts) IN (SELECT site_id, material_id, ts FROM flagged))
)
SELECT p.site_id, p.material_id, s.grid_cell, p.unit, p.prev_seq, p.prev_ts, p.prev_qty, p.seq, p.ts, p.qty,
       coalesce(-sum(m.qty) FILTER (WHERE m.kind = 'pick'), 0),
       coalesce(sum(m.qty) FILTER (WHERE m.kind = 'delivery'), 0),
       coalesce(sum(m.qty) FILTER (WHERE m.kind IN ('consumption', 'replenishment')), 0),
       coalesce(jsonb_agg(jsonb_build_object('kind', m.kind, 'ref', m.ref, 'qty', abs(m.qty), 'at', m.at)
                          ORDER BY m.at, m.ref) FILTER (WHERE m.ref IS NOT NULL), '[]'::jsonb),
       p.last_ts, now(),
       EXISTS (SELECT 1 FROM dispatch_orders o
               WHERE o.leg = 'supply' AND o.origin = p.site_id AND o.material_id = p.material_id
                 AND o.status IN ('open', 'accepted') AND o.created_at <= p.ts) AS pick_pending,
       p.capacity
FROM cand p
LEFT JOIN sites s ON s.site_id = p.site_id
LEFT JOIN moves m ON m.site_id = p.site_id AND m.material_id = p.material_id AND m.at > p.prev_ts AND m.at <= p.ts
GROUP BY p.site_id, p.material_id, s.grid_cell, p.unit, p.prev_seq, p.prev_ts, p.prev_qty, p.seq, p.ts, p.qty,
         p.last_ts, p.capacity
"""

#: Each key's cursor moves to its newest settled reading, by (ts, seq) as readings are ordered (older
#: than the lookback too: a key first seen with old readings starts from its newest one, so a later
#: reading is judged against it). That reading is the newest of the key's pairs just read (PAIRS_SQL
#: keeps it in ``reconcile_newest``): every settled reading since the cursor is among them, so the
#: history is probed again only for a key with no cursor and no reading within the lookback. (Not
#: probing also keeps a reading committed after PAIRS_SQL ran from being passed over unjudged.)
ADVANCE_CURSOR = """
INSERT INTO reconcile_cursor AS c (site_id, material_id, ts, seq)
SELECT n.site_id, n.material_id, n.ts, n.seq
FROM reconcile_newest n
WHERE n.site_id || chr(31) || n.material_id <> ALL(%(held)s::text[])
UNION ALL
SELECT sl.site_id, sl.material_id, r.ts, r.seq
FROM stock_latest sl
CROSS JOIN LATERAL (SELECT x.ts, x.seq FROM stock_readings x
                    WHERE x.site_id = sl.site_id AND x.material_id = sl.material_id
                      AND x.ts <= now() - make_interval(secs => %(settle_s)s)
                    ORDER BY x.ts DESC, x.seq DESC LIMIT 1) r
WHERE NOT EXISTS (SELECT 1 FROM reconcile_cursor old
                  WHERE old.site_id = sl.site_id AND old.material_id = sl.material_id)
  AND NOT EXISTS (SELECT 1 FROM reconcile_newest n
                  WHERE n.site_id = sl.site_id AND n.material_id = sl.material_id)
  AND sl.site_id || chr(31) || sl.material_id <> ALL(%(held)s::text[])
""" + CURSOR_FORWARD_ONLY

#: Session-local, emptied at each commit: PAIRS_SQL's newest settled reading per key (see above).
CREATE_NEWEST = """
CREATE TEMP TABLE IF NOT EXISTS reconcile_newest (
    site_id text, material_id text, ts timestamptz, seq bigint
) ON COMMIT DELETE ROWS
"""

#: Keys whose judgement waits: the cursor stays at the reading just before the change that waits.
HOLD_CURSOR = """
INSERT INTO reconcile_cursor AS c (site_id, material_id, ts, seq) VALUES (%s, %s, %s, %s)
""" + CURSOR_FORWARD_ONLY

STORE_CHANGE = """
INSERT INTO stock_changes (site_id, material_id, seq, ts, qty, unit, prev_seq, prev_ts, prev_qty, picked_qty,
                           received_qty, declared_qty, expected_qty, unexplained_qty, tolerance_qty, verdict,
                           explained_by)
VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
ON CONFLICT (site_id, material_id, ts, seq) DO UPDATE
SET picked_qty = EXCLUDED.picked_qty, received_qty = EXCLUDED.received_qty, declared_qty = EXCLUDED.declared_qty,
    expected_qty = EXCLUDED.expected_qty, unexplained_qty = EXCLUDED.unexplained_qty, verdict = EXCLUDED.verdict,
    explained_by = EXCLUDED.explained_by, judged_at = now()
"""

INSERT_ALERT = """
INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details)
VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (alert_id) DO NOTHING
"""

#: Open findings with the movements now known in their interval (explanations that came late).
REJUDGE_OPEN = """
WITH open AS (
    SELECT a.alert_id, a.site_id, a.material_id, a.grid_cell, a.details,
           (a.details->>'prev_ts')::timestamptz AS prev_ts, (a.details->>'ts')::timestamptz AS ts
    FROM alerts a
    WHERE a.kind = ANY(%(kinds)s) AND a.resolved_at IS NULL AND a.details ? 'prev_ts'
), moves AS (""" + MOVES_SQL.format(since="(SELECT min(prev_ts) FROM open)") + """)
SELECT o.alert_id, o.site_id, o.material_id, o.grid_cell, o.details,
       coalesce(-sum(m.qty) FILTER (WHERE m.kind = 'pick'), 0),
       coalesce(sum(m.qty) FILTER (WHERE m.kind = 'delivery'), 0),
       coalesce(sum(m.qty) FILTER (WHERE m.kind IN ('consumption', 'replenishment')), 0),
       coalesce(jsonb_agg(jsonb_build_object('kind', m.kind, 'ref', m.ref, 'qty', abs(m.qty), 'at', m.at)
                          ORDER BY m.at, m.ref) FILTER (WHERE m.ref IS NOT NULL), '[]'::jsonb)
FROM open o
LEFT JOIN moves m ON m.site_id = o.site_id AND m.material_id = o.material_id AND m.at > o.prev_ts AND m.at <= o.ts
GROUP BY o.alert_id, o.site_id, o.material_id, o.grid_cell, o.details
"""

RESOLVE_EXPLAINED = """
UPDATE alerts SET resolved_at = now(), published_at = NULL, resolved_by = 'system',
       resolve_note = %s WHERE alert_id = %s AND resolved_at IS NULL
"""


@dataclass(frozen=True)
class ReconcileResult:
    judged: int = 0            # pairs with movements or a change beyond noise
    explained: int = 0
    alerts_raised: int = 0
    alerts_resolved: int = 0   # open findings explained by movements that arrived late


def _as_utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Pending:
    """What the SQL knows about a pair beyond its figures: whether it may still get explained."""

    newest_settled: bool     # its reading is the newest settled one of the key
    pick_pending: bool       # a supply order from the site and material is still open / accepted
    age_s: float             # seconds since its reading


def change_from_row(row: tuple) -> tuple[StockChange, Pending]:
    (site_id, material_id, cell, unit, prev_seq, prev_ts, prev_qty, seq, ts, qty, picked, received, declared,
     explained_by, last_ts, now, pick_pending, capacity) = row
    change = StockChange(site_id, material_id, cell, unit, int(prev_seq), _as_utc(prev_ts), float(prev_qty),
                         int(seq), _as_utc(ts), float(qty), float(picked), float(received), float(declared),
                         list(explained_by or []), None if capacity is None else float(capacity))
    return change, Pending(last_ts == ts, bool(pick_pending), (now - ts).total_seconds())


def merge(a: StockChange, b: StockChange) -> StockChange:
    """Two consecutive changes as one (previous of ``a`` -> reading of ``b``, movements of both)."""
    return StockChange(a.site_id, a.material_id, a.grid_cell, a.unit, a.prev_seq, a.prev_ts, a.prev_qty, b.seq,
                       b.ts, b.qty, a.picked + b.picked, a.received + b.received, a.declared + b.declared,
                       a.explained_by + b.explained_by, b.capacity)


def stamped_on_reading(c: StockChange) -> bool:
    """A movement of the interval carries the very millisecond of its closing reading: it may have
    happened just after that reading was taken (readings and answers are stamped to the ms)."""
    return any(_as_utc(datetime.fromisoformat(str(m["at"]))) == c.ts for m in c.explained_by)


def settle_pairs(pairs: list[tuple[StockChange, Pending]], policy: Policy
                 ) -> tuple[list[tuple[StockChange, Judgement]], dict[tuple[str, str], tuple[datetime, int]]]:
    """Judge each key's pairs in time order. Two consecutive unexplained changes that together are
    explained (a movement stamped on the millisecond of the reading before the one that shows
    it) are both explained. An unexplained change that may still get its explanation waits
    (see :attr:`Policy.pending_wait_s`): it and the key's later pairs are left for a later pass,
    and the key's cursor is held just before it. Returns the judged pairs and the held cursors."""
    by_key: dict[tuple[str, str], list[tuple[StockChange, Pending]]] = {}
    for c, p in sorted(pairs, key=lambda cp: (cp[0].site_id, cp[0].material_id, cp[0].ts, cp[0].seq)):
        by_key.setdefault((c.site_id, c.material_id), []).append((c, p))
    judged: list[tuple[StockChange, Judgement]] = []
    held: dict[tuple[str, str], tuple[datetime, int]] = {}
    for key, seq in by_key.items():
        i = 0
        while i < len(seq):
            c, p = seq[i]
            j = judge(c, policy)
            if (j.verdict != "explained" and i + 1 < len(seq) and seq[i + 1][0].prev_seq == c.seq
                    and stamped_on_reading(c)):
                nxt = seq[i + 1][0]
                if judge(merge(c, nxt), policy).verdict == "explained":
                    for one in (c, nxt):
                        jo = judge(one, policy)
                        judged.append((one, Judgement("explained", jo.expected, jo.unexplained, jo.tolerance)))
                    i += 2
                    continue
            may_wait = p.pick_pending or (p.newest_settled and stamped_on_reading(c))
            if j.verdict != "explained" and may_wait and p.age_s < policy.pending_wait_s:
                held[key] = (c.prev_ts, c.prev_seq)
                break
            judged.append((c, j))
            i += 1
    return judged, held


def _store_row(c: StockChange, j: Judgement) -> tuple:
    return (c.site_id, c.material_id, c.seq, c.ts, c.qty, c.unit, c.prev_seq, c.prev_ts, c.prev_qty, c.picked,
            c.received, c.declared, j.expected, j.unexplained, j.tolerance, j.verdict, Jsonb(c.explained_by))


def _alert_row(a: Alert) -> tuple:
    return (a.alert_id, a.kind, a.severity, a.site_id, a.grid_cell, a.material_id, a.message, a.at, Jsonb(a.details))


async def reconcile(cur: psycopg.AsyncCursor, policy: Policy = Policy()) -> ReconcileResult:
    """Judge every settled reading since each key's cursor, store the notable changes, raise
    alerts for unexplained remainders, move the cursors; then resolve open findings that are
    explained now. Runs in the caller's transaction (the worker's checks)."""
    params = {"settle_s": policy.settle_s, "lookback_s": policy.first_lookback_s,
              "tol_units": policy.tolerance_units, "tol_share": policy.tolerance_share}
    await cur.execute(CREATE_NEWEST)
    await cur.execute("DELETE FROM reconcile_newest")
    await cur.execute(PAIRS_SQL, params)
    judged, held = settle_pairs([change_from_row(r) for r in await cur.fetchall()], policy)
    alerts = [a for a in (alert_for(c, j) for c, j in judged) if a is not None]
    if judged:
        await cur.executemany(STORE_CHANGE, [_store_row(c, j) for c, j in judged])
    raised = 0
    for a in alerts:
        await cur.execute(INSERT_ALERT, _alert_row(a))
        raised += max(cur.rowcount, 0)
    await cur.execute(ADVANCE_CURSOR, {**params, "held": [f"{s}\x1f{m}" for s, m in held]})
    if held:
        await cur.executemany(HOLD_CURSOR, [(s, m, ts, seq) for (s, m), (ts, seq) in held.items()])
    resolved = await _resolve_explained(cur, policy)
    return ReconcileResult(len(judged), sum(1 for _, j in judged if j.verdict == "explained"), raised, resolved)


async def _resolve_explained(cur: psycopg.AsyncCursor, policy: Policy) -> int:
    await cur.execute(REJUDGE_OPEN, {"kinds": list(FINDING_KINDS)})
    resolved = 0
    for alert_id, site_id, material_id, cell, d, picked, received, declared, explained_by in await cur.fetchall():
        c = StockChange(site_id, material_id, cell, d.get("unit", ""), int(d["prev_seq"]),
                        datetime.fromisoformat(d["prev_ts"]), float(d["prev_qty"]), int(d["seq"]),
                        datetime.fromisoformat(d["ts"]), float(d["qty"]), float(picked), float(received),
                        float(declared), list(explained_by or []),
                        None if d.get("capacity_qty") is None else float(d["capacity_qty"]))
        j = judge(c, policy)
        if j.verdict == "explained":
            await cur.execute(RESOLVE_EXPLAINED, (f"explained after all: expected {j.expected:g} {c.unit} = "
                                                  f"previous {c.prev_qty:g} {_explanation(c)}", alert_id))
            resolved += max(cur.rowcount, 0)
    return resolved


# ------------------------------------------------------------------------ declared movements
@dataclass(frozen=True)
class Movement:
    movement_id: str
    site_id: str
    material_id: str
    kind: str           # consumption, replenishment
    qty: float
    unit: str
    at: datetime


def check_movement(m: Movement, now: datetime, material_unit: str | None) -> None:
    """Raise ValueError with the reason a person reads; ``material_unit`` None = unknown material."""
    if not m.movement_id or len(m.movement_id) > 200 or not m.movement_id.isprintable():
        raise ValueError("movement_id must be printable text of 1..200 characters")
    if m.kind not in MOVEMENT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MOVEMENT_KINDS)}, got {m.kind!r}")
    if isinstance(m.qty, bool) or not isinstance(m.qty, (int, float)) or not math.isfinite(m.qty) or m.qty <= 0:
        raise ValueError(f"qty must be a positive number, got {m.qty!r}")
    if material_unit is None:
        raise ValueError(f"unknown material {m.material_id!r}")
    if m.unit != material_unit:
        raise ValueError(f"{m.material_id} is counted in {material_unit!r}, not {m.unit!r}")
    if m.at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    if m.at > now + timedelta(minutes=5):
        raise ValueError("at is more than 5 minutes in the future")


def declare_movement(conn: psycopg.Connection, m: Movement, actor: str, source: str) -> bool:
    """Record an owner's declared movement once (True: new; False: the same one again). The same
    movement id with other figures is refused. ``actor`` is the authenticated caller (the API's
    user; the CLI's marked OS user)."""
    if not actor or not actor.strip():
        raise ValueError("a declared movement needs an actor")
    with conn.transaction():
        site = conn.execute("SELECT 1 FROM sites WHERE site_id = %s", (m.site_id,)).fetchone()
        if site is None:
            raise ValueError(f"unknown site {m.site_id!r}")
        unit = conn.execute("SELECT unit FROM materials WHERE material_id = %s", (m.material_id,)).fetchone()
        check_movement(m, datetime.now(timezone.utc), unit[0] if unit else None)
        prior = conn.execute("SELECT site_id, material_id, kind, qty, unit, at FROM stock_movements"
                             " WHERE movement_id = %s", (m.movement_id,)).fetchone()
        if prior is not None:
            same = (prior[0], prior[1], prior[2], float(prior[3]), prior[4], prior[5]) == (
                m.site_id, m.material_id, m.kind, float(m.qty), m.unit, m.at)
            if not same:
                raise ValueError(f"movement {m.movement_id!r} was already declared with other figures")
            return False
        conn.execute("INSERT INTO stock_movements (movement_id, site_id, material_id, kind, qty, unit, at, actor,"
                     " source) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                     (m.movement_id, m.site_id, m.material_id, m.kind, m.qty, m.unit, m.at, actor.strip(), source))
    return True
