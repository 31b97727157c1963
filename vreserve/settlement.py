"""Settlement after an emergency: what each owner is owed, line by line, traceable to orders.

Pure arithmetic on facts the SQL adapter (vreserve/sql_settlement.py) reads; shared by
`vreserve settle` and the HTTP API. The rules, with a worked
example, are in docs/supervision.md ("Settlement rules"); in short, per site, material and contract:

- ``call_off``: delivered units x call-off price (paid);
- ``standby_fee``: committed units x days of the contract inside the settlement period x standby fee;
- ``shortfall_penalty``: the units the owner answers for (short deliveries; failed picks at the
  site, i.e. failed after the carrier accepted and before anything was picked), beyond the grace
  share, capped at the committed quantity, x penalty (deducted); a carrier's failure (failed before
  accepting: no vehicle, or after the pick) costs the owner nothing;
- ``late_penalty``: units delivered whose pick at the site (in_transit) came after the contracted
  response time x late penalty (deducted); transport time is the carrier's, not the owner's.

Every amount is rounded once, per line, to whole minor units (half away from zero).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Iterable, Sequence

from vreserve.money import fmt_qty, minor
from vreserve.supply import (
    PENDING_STATUSES,
    OrderOutcome,
    Site,
    SupplyOrder,
    Terms,
    contract_for,
    index_terms,
    order_outcome,
    utc_day,
)

LINE_KINDS = ("call_off", "standby_fee", "shortfall_penalty", "late_penalty")


@dataclass(frozen=True)
class Line:
    owner_id: str
    owner_kind: str
    site_id: str
    material_id: str
    unit: str
    kind: str
    qty: Decimal          # units of the material; unit-days for standby_fee
    rate_minor: Decimal   # minor units per unit (per unit-day for standby_fee)
    amount_minor: int     # positive: owed to the owner; negative: deducted
    contract_id: str | None
    order_ids: tuple[str, ...] = ()
    note: str = ""

    @property
    def key(self) -> tuple:
        return (self.owner_id, self.site_id, self.material_id, LINE_KINDS.index(self.kind), self.contract_id or "")

    def to_dict(self) -> dict:
        return {
            "owner_id": self.owner_id, "owner_kind": self.owner_kind, "site_id": self.site_id,
            "material_id": self.material_id, "unit": self.unit, "kind": self.kind,
            "qty": fmt_qty(self.qty), "rate_minor": fmt_qty(self.rate_minor),
            "amount_minor": self.amount_minor, "contract_id": self.contract_id,
            "order_ids": list(self.order_ids), "note": self.note,
        }


@dataclass(frozen=True)
class Delivery:
    """Units ordered and delivered per site and material (the statement's quantity section)."""

    site_id: str
    material_id: str
    unit: str
    ordered_qty: Decimal
    delivered_qty: Decimal
    pending_orders: int
    order_ids: tuple[str, ...]
    owner_id: str = ""


@dataclass
class Computation:
    lines: list[Line]
    deliveries: list[Delivery]
    warnings: list[str] = field(default_factory=list)


def standby_days(t: Terms, period_from: date, period_to: date) -> int:
    """Calendar days of the contract inside the settlement period, both ends included."""
    start, end = max(t.valid_from, period_from), min(t.valid_to, period_to)
    return max(0, (end - start).days + 1)


def compute(
    sites: dict[str, Site],
    terms: Sequence[Terms],
    orders: Iterable[SupplyOrder],
    standby_sites: Iterable[str],
    period_from: date,
    period_to: date,
    units: dict[str, str],
) -> Computation:
    """All statement lines for one emergency, sorted deterministically."""
    warnings: list[str] = []
    groups, deliveries = _group_outcomes(terms, orders, warnings)
    contracts_by_id: dict[str, Terms] = {t.contract_id: t for t in terms}
    lines: list[Line] = []
    for (site_id, material_id, contract_id), outs in groups.items():
        t = contracts_by_id.get(contract_id) if contract_id else None
        lines += _order_lines(sites[site_id], material_id, contract_id, t, outs)
    lines += _standby_lines(sites, terms, standby_sites, period_from, period_to, units)
    lines.sort(key=lambda l: l.key)
    return Computation(lines, _delivery_rows(sites, deliveries, warnings), warnings)


def _group_outcomes(terms: Sequence[Terms], orders: Iterable[SupplyOrder], warnings: list[str]) -> tuple[
        dict[tuple[str, str, str | None], list[OrderOutcome]], dict[tuple[str, str], list[OrderOutcome]]]:
    """Order outcomes by (site, material, contract), so each line cites all its orders, and by
    (site, material) for the delivery rows. An order without a valid contract is said in ``warnings``."""
    groups: dict[tuple[str, str, str | None], list[OrderOutcome]] = {}
    deliveries: dict[tuple[str, str], list[OrderOutcome]] = {}
    by_pair = index_terms(terms)
    for order in orders:
        out = order_outcome(order)
        t = contract_for(by_pair.get((order.site_id, order.material_id), ()), order.site_id, order.material_id,
                         utc_day(order.created_at))
        if t is None:
            warnings.append(f"order {order.order_id}: site {order.site_id} had no valid contract for "
                            f"{order.material_id} on {utc_day(order.created_at)}; paid and penalised at 0")
        groups.setdefault((order.site_id, order.material_id, t.contract_id if t else None), []).append(out)
        deliveries.setdefault((order.site_id, order.material_id), []).append(out)
    return groups, deliveries


def _order_lines(site: Site, material_id: str, contract_id: str | None, t: Terms | None,
                 outs: list[OrderOutcome]) -> list[Line]:
    """Call-off, shortfall and late lines of one (site, material, contract)'s orders."""
    outs.sort(key=lambda o: o.order.order_id)
    common = dict(owner_id=site.owner_id, owner_kind=site.owner_kind, site_id=site.site_id,
                  material_id=material_id, unit=outs[0].order.unit, contract_id=contract_id)
    lines: list[Line] = []
    delivered = [o for o in outs if o.delivered_qty > 0]
    if delivered:
        qty = sum((o.delivered_qty for o in delivered), Decimal(0))
        rate = Decimal(t.call_off_price_minor_per_unit if t else 0)
        lines.append(Line(kind="call_off", qty=qty, rate_minor=rate, amount_minor=minor(qty * rate),
                          order_ids=tuple(o.order.order_id for o in delivered), **common))
    if t is None:
        return lines
    # Shortfall: units not delivered on ended orders, beyond the grace share, capped at commitment.
    short_units = Decimal(0)
    short_ids = []
    for o in outs:
        excess = o.shortfall - t.penalty_grace_share * o.order.qty
        if excess > 0:
            short_units += excess
            short_ids.append(o.order.order_id)
    capped = min(short_units, t.committed_qty)
    if short_ids and t.penalty_minor_per_unit > 0:
        note = f"capped at committed {fmt_qty(t.committed_qty)}" if capped < short_units else ""
        rate = Decimal(t.penalty_minor_per_unit)
        lines.append(Line(kind="shortfall_penalty", qty=capped, rate_minor=rate,
                          amount_minor=-minor(capped * rate), order_ids=tuple(short_ids), note=note, **common))
    # Late: units delivered whose pick at the site came after the contracted response time.
    if t.min_response_minutes > 0 and t.late_penalty_minor_per_unit > 0:
        late = [o for o in delivered if o.pick_minutes is not None and o.pick_minutes > t.min_response_minutes]
        if late:
            qty = sum((o.delivered_qty for o in late), Decimal(0))
            rate = Decimal(t.late_penalty_minor_per_unit)
            lines.append(Line(kind="late_penalty", qty=qty, rate_minor=rate, amount_minor=-minor(qty * rate),
                              order_ids=tuple(o.order.order_id for o in late),
                              note=f"response over {t.min_response_minutes} min", **common))
    return lines


def _standby_lines(sites: dict[str, Site], terms: Sequence[Terms], standby_sites: Iterable[str],
                   period_from: date, period_to: date, units: dict[str, str]) -> list[Line]:
    """Standby fees for every contract of the sites in the emergency's scope."""
    by_site: dict[str, list[Terms]] = {}
    for t in terms:
        by_site.setdefault(t.site_id, []).append(t)
    lines: list[Line] = []
    for site_id in sorted(set(standby_sites)):
        site = sites[site_id]
        for t in sorted(by_site.get(site_id, ()), key=lambda t: (t.material_id, t.contract_id)):
            days = standby_days(t, period_from, period_to)
            if days == 0 or t.standby_fee_minor_per_unit_day == 0 or t.committed_qty == 0:
                continue
            qty = t.committed_qty * days
            lines.append(Line(owner_id=site.owner_id, owner_kind=site.owner_kind, site_id=site_id,
                              material_id=t.material_id, unit=units.get(t.material_id, "unit"),
                              kind="standby_fee", qty=qty, rate_minor=t.standby_fee_minor_per_unit_day,
                              amount_minor=minor(qty * t.standby_fee_minor_per_unit_day), contract_id=t.contract_id,
                              note=f"{fmt_qty(t.committed_qty)} x {days} day(s)"))
    return lines


def _delivery_rows(sites: dict[str, Site], deliveries: dict[tuple[str, str], list[OrderOutcome]],
                   warnings: list[str]) -> list[Delivery]:
    """Ordered and delivered units per (site, material); pending orders said in ``warnings``."""
    rows = []
    for (site_id, material_id), outs in sorted(deliveries.items()):
        live = [o for o in outs if o.final or o.delivered_qty > 0 or o.status not in ("cancelled", "closed")]
        rows.append(Delivery(
            site_id=site_id, material_id=material_id, unit=outs[0].order.unit,
            ordered_qty=sum((o.order.qty for o in live), Decimal(0)),
            delivered_qty=sum((o.delivered_qty for o in outs), Decimal(0)),
            pending_orders=sum(1 for o in outs if o.status in PENDING_STATUSES and not o.final),
            order_ids=tuple(sorted(o.order.order_id for o in outs)),
            owner_id=sites[site_id].owner_id,
        ))
        pending = [o.order.order_id for o in outs if o.status in PENDING_STATUSES and not o.final]
        if pending:
            warnings.append(f"site {site_id} {material_id}: {len(pending)} order(s) still pending "
                            f"({', '.join(pending[:5])}); a later status will come as an ADJUSTMENT")
    return rows


def content_hash(lines: Iterable[Line]) -> str:
    """Hash of what a statement says (keys, quantities, amounts), independent of when it was issued."""
    canon = [[l.owner_id, l.site_id, l.material_id, l.kind, l.contract_id, fmt_qty(l.qty), l.amount_minor]
             for l in sorted(lines, key=lambda l: l.key)]
    return hashlib.sha256(json.dumps(canon, separators=(",", ":")).encode()).hexdigest()


def cumulative(versions: Iterable[Sequence[Line]]) -> list[Line]:
    """Sum the lines of a statement and its adjustments into one line per key."""
    acc: dict[tuple, Line] = {}
    for lines in versions:
        for l in lines:
            prev = acc.get(l.key)
            if prev is None:
                acc[l.key] = l
            else:
                acc[l.key] = replace(prev, qty=prev.qty + l.qty, amount_minor=prev.amount_minor + l.amount_minor,
                                     order_ids=tuple(sorted(set(prev.order_ids) | set(l.order_ids))),
                                     rate_minor=l.rate_minor)
    return [l for l in sorted(acc.values(), key=lambda l: l.key) if l.qty != 0 or l.amount_minor != 0]


def adjustment(previous: Sequence[Line], current: Sequence[Line], late_status_ids: Sequence[str]) -> list[Line]:
    """Lines that turn the cumulative ``previous`` statement into ``current``: the ADJUSTMENT."""
    prev = {l.key: l for l in previous}
    cur = {l.key: l for l in current}
    tag = "ADJUSTMENT"
    if late_status_ids:
        tag += " after late status " + ", ".join(late_status_ids[:10])
        if len(late_status_ids) > 10:
            tag += f" (+{len(late_status_ids) - 10} more)"
    out = []
    for key in sorted(set(prev) | set(cur)):
        p, c = prev.get(key), cur.get(key)
        if c is None:
            out.append(replace(p, qty=-p.qty, amount_minor=-p.amount_minor, note=f"{tag}: line withdrawn"))
        elif p is None:
            out.append(replace(c, note=f"{tag}: new line" + (f"; {c.note}" if c.note else "")))
        elif p.qty != c.qty or p.amount_minor != c.amount_minor:
            out.append(replace(c, qty=c.qty - p.qty, amount_minor=c.amount_minor - p.amount_minor,
                               note=f"{tag}: was {fmt_qty(p.qty)} {c.unit} / {p.amount_minor} minor, now "
                                    f"{fmt_qty(c.qty)} {c.unit} / {c.amount_minor} minor"))
    return out


def statement_id(emergency_id: str, version: int) -> str:
    return f"ST-{emergency_id}-v{version}"


@dataclass(frozen=True)
class StatementVersion:
    statement_id: str
    emergency_id: str
    version: int
    kind: str                 # 'statement' or 'adjustment'
    period_from: date
    period_to: date
    issued_at: datetime
    content_hash: str
    total_minor: int
    late_status_ids: tuple[str, ...]
    lines: tuple[Line, ...]
    #: status record ids this version was computed from (the next one's late records are the rest)
    basis_status_ids: tuple[str, ...] = ()
    #: the authenticated actor who issued it (None on versions stored before this was kept)
    issued_by: str | None = None

    def header(self) -> dict:
        return {
            "statement_id": self.statement_id, "emergency_id": self.emergency_id, "version": self.version,
            "kind": self.kind.upper() if self.kind == "adjustment" else self.kind,
            "period_from": self.period_from.isoformat(), "period_to": self.period_to.isoformat(),
            "issued_at": self.issued_at.isoformat(), "content_hash": self.content_hash,
            "total_minor": self.total_minor, "late_status_ids": list(self.late_status_ids),
            "issued_by": self.issued_by,
        }


def next_version(
    emergency_id: str,
    stored: Sequence[StatementVersion],
    current: Sequence[Line],
    period_from: date,
    period_to: date,
    issued_at: datetime,
    basis_status_ids: Sequence[str],
    issued_by: str | None = None,
) -> StatementVersion | None:
    """The version to issue now, or None when the stored statement already says ``current``.

    ``basis_status_ids``: the status records ``current`` was computed from; those no earlier version
    saw are named on an adjustment as the late records that caused it.
    """
    h = content_hash(current)
    seen = {sid for v in stored for sid in v.basis_status_ids}
    late_status_ids = sorted(set(basis_status_ids) - seen) if stored else []
    basis = tuple(sorted(basis_status_ids))
    if stored:
        if stored[-1].content_hash == h:
            return None
        prev = cumulative(v.lines for v in stored)
        delta = adjustment(prev, current, late_status_ids)
        version = stored[-1].version + 1
        return StatementVersion(statement_id(emergency_id, version), emergency_id, version, "adjustment",
                                period_from, period_to, issued_at, h, sum(l.amount_minor for l in delta),
                                tuple(late_status_ids), tuple(delta), basis, issued_by)
    return StatementVersion(statement_id(emergency_id, 1), emergency_id, 1, "statement", period_from, period_to,
                            issued_at, h, sum(l.amount_minor for l in current), (), tuple(current), basis, issued_by)


def summarise(lines: Sequence[Line]) -> tuple[list[dict], list[dict]]:
    """Per-site and per-owner totals (minor units) of the cumulative lines."""
    per_site: dict[str, dict] = {}
    per_owner: dict[str, dict] = {}
    for l in lines:
        for table, key, base in ((per_site, l.site_id, {"site_id": l.site_id, "owner_id": l.owner_id}),
                                 (per_owner, l.owner_id, {"owner_id": l.owner_id, "owner_kind": l.owner_kind})):
            row = table.setdefault(key, {**base, **{k + "_minor": 0 for k in LINE_KINDS}, "total_minor": 0})
            row[l.kind + "_minor"] += l.amount_minor
            row["total_minor"] += l.amount_minor
    return ([per_site[k] for k in sorted(per_site)], [per_owner[k] for k in sorted(per_owner)])


def deliveries_per_owner(deliveries: Sequence[Delivery]) -> list[dict]:
    """Units ordered and delivered per owner and material (quantities only add within a material)."""
    acc: dict[tuple[str, str], dict] = {}
    for d in deliveries:
        row = acc.setdefault((d.owner_id, d.material_id), {
            "owner_id": d.owner_id, "material_id": d.material_id, "unit": d.unit, "ordered_qty": Decimal(0),
            "delivered_qty": Decimal(0), "sites": 0})
        row["ordered_qty"] += d.ordered_qty
        row["delivered_qty"] += d.delivered_qty
        row["sites"] += 1
    return [acc[k] for k in sorted(acc)]


def default_period(declared_at: datetime, ended_at: datetime | None, periods: int, period_length_s: float) -> tuple[date, date]:
    """Emergency days: declared date to end date (or the planned end if still open), both included."""
    end = ended_at or (declared_at + timedelta(seconds=periods * period_length_s))
    return utc_day(declared_at), max(utc_day(declared_at), utc_day(end))


@dataclass
class SettleResult:
    """One settlement run: every version (the new one, if any, last) and what it was computed from."""

    versions: list[StatementVersion]
    issued: StatementVersion | None       # None: nothing changed since the last version
    computation: Computation

    @property
    def cumulative(self) -> list[Line]:
        return cumulative(v.lines for v in self.versions)


def document(result: SettleResult, currency: str) -> dict:
    """The whole statement as one document (the CLI's JSON file and the API's answer): every version
    with its lines, units ordered and delivered, per-site and per-owner totals. Quantities are
    strings in their ``unit``; money integer minor units of ``currency``."""
    per_site, per_owner = summarise(result.cumulative)
    return {
        "emergency_id": result.versions[0].emergency_id,
        "currency": currency,
        "money": f"integer minor units of {currency}; positive = owed to the owner, negative = deducted",
        "versions": [{**v.header(), "lines": [l.to_dict() for l in v.lines]} for v in result.versions],
        "deliveries_per_owner": [{**r, "ordered_qty": fmt_qty(r["ordered_qty"]),
                                  "delivered_qty": fmt_qty(r["delivered_qty"])}
                                 for r in deliveries_per_owner(result.computation.deliveries)],
        "deliveries": [{"site_id": d.site_id, "owner_id": d.owner_id, "material_id": d.material_id, "unit": d.unit,
                        "ordered_qty": fmt_qty(d.ordered_qty), "delivered_qty": fmt_qty(d.delivered_qty),
                        "pending_orders": d.pending_orders, "order_ids": list(d.order_ids)}
                       for d in result.computation.deliveries],
        "per_site": per_site,
        "per_owner": per_owner,
        "total_minor": sum(r["total_minor"] for r in per_owner),
        "warnings": result.computation.warnings,
    }
