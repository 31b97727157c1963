"""Supply-leg orders as settlement and assessment read them: the contract terms, the orders with
their status records, and what happened to each order (``order_outcome``), from the records alone.

Pure; shared by supervision (settlement, the assessment CLI) and the HTTP API (assessments), so it
lives in vreserve/. The rules are docs/supervision.md's ("Settlement rules", "Assessment").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Iterable, Sequence

from vreserve.contract_terms import ContractTerms
from vreserve.money import to_decimal

#: Status records after which undelivered units are a shortfall the owner answers for. An order the
#: dispatcher cancelled (superseded) or closed (emergency over) without either record is not penalised.
SHORTFALL_STATUSES = ("delivered", "failed")
PENDING_STATUSES = ("open", "accepted", "in_transit")


#: The contract terms settlement reads (one type for every module: :mod:`vreserve.contract_terms`).
Terms = ContractTerms


@dataclass(frozen=True)
class StatusEvent:
    status_id: str
    status: str
    at: datetime
    qty: Decimal | None
    received_at: datetime


@dataclass(frozen=True)
class SupplyOrder:
    """A supply-leg order (site -> distribution centre) with its status history."""

    order_id: str
    site_id: str
    material_id: str
    unit: str
    qty: Decimal
    created_at: datetime
    events: tuple[StatusEvent, ...] = ()
    #: dispatch_orders.status as the dispatcher keeps it (it cancels superseded orders and closes
    #: the rest when the emergency ends without writing a status record)
    current_status: str = "open"


@dataclass(frozen=True)
class Site:
    site_id: str
    owner_id: str
    owner_kind: str


@dataclass(frozen=True)
class OrderOutcome:
    """What happened to one order, from its status records alone."""

    order: SupplyOrder
    status: str               # latest status by (at, status_id); 'open' without records
    delivered_qty: Decimal    # sum over distinct delivered records (no qty = the whole order), capped
    delivered_at: datetime | None  # first delivered record
    final: bool               # it has a delivered or failed record: nothing more will come
    picked_at: datetime | None = None  # first in_transit record (else the first delivered one)
    #: who answers for a failed record: 'site' (the carrier had accepted and came, but nothing was
    #: picked), 'carrier' (failed before accepting: no vehicle; or after the pick: lost on the road)
    failure_by: str | None = None

    @property
    def shortfall(self) -> Decimal:
        """Units the owner answers for: missing after a delivery, or all of a failed pick at the site."""
        if not self.final or self.failure_by == "carrier":
            return Decimal(0)
        return self.order.qty - self.delivered_qty

    @property
    def response_minutes(self) -> float | None:
        """Order created -> first delivered record, in minutes (what the rescue side waits)."""
        if self.delivered_at is None:
            return None
        return (self.delivered_at - self.order.created_at).total_seconds() / 60.0

    @property
    def pick_minutes(self) -> float | None:
        """Order created -> goods handed over at the site (in_transit), in minutes: the owner's response."""
        if self.picked_at is None:
            return None
        return (self.picked_at - self.order.created_at).total_seconds() / 60.0


def order_outcome(order: SupplyOrder) -> OrderOutcome:
    events = sorted(order.events, key=lambda e: (e.at, e.status_id))
    status = events[-1].status if events else order.current_status
    if order.current_status in ("cancelled", "closed") and status in PENDING_STATUSES:
        status = order.current_status
    delivered = Decimal(0)
    delivered_at = picked_at = None
    accepted = picked = False
    failure_by = None
    for e in events:
        if e.status == "accepted":
            accepted = True
        elif e.status == "in_transit":
            picked = True
            picked_at = picked_at or e.at
        elif e.status == "delivered":
            delivered += order.qty if e.qty is None else e.qty
            delivered_at = delivered_at or e.at
            picked = True
        elif e.status == "failed" and failure_by is None and delivered == 0:
            failure_by = "site" if accepted and not picked else "carrier"
    final = any(e.status in SHORTFALL_STATUSES for e in events)
    if delivered > 0:
        failure_by = None  # goods arrived: a short delivery is the site's (it handed over less)
    return OrderOutcome(order, status, min(delivered, order.qty), delivered_at, final,
                        picked_at or delivered_at, failure_by)


def utc_day(ts: datetime) -> date:
    """The calendar day (UTC) of a timestamp: contract validity and settlement periods are UTC days."""
    return ts.astimezone(timezone.utc).date()


def contract_for(terms: Sequence[Terms], site_id: str, material_id: str, day: date) -> Terms | None:
    """The contract valid on ``day``; with several, the one starting latest (then the largest id).

    ``terms`` may be all contracts, or just those of this (site, material) (see :func:`index_terms`).
    """
    valid = [t for t in terms if t.site_id == site_id and t.material_id == material_id and t.valid_on(day)]
    if not valid:
        return None
    return max(valid, key=lambda t: (t.valid_from, t.contract_id))


def index_terms(terms: Iterable[Terms]) -> dict[tuple[str, str], list[Terms]]:
    """Contracts by (site, material), so looking one up does not scan every contract."""
    out: dict[tuple[str, str], list[Terms]] = {}
    for t in terms:
        out.setdefault((t.site_id, t.material_id), []).append(t)
    return out


def to_terms(row: dict) -> Terms:
    return Terms(
        contract_id=row["contract_id"], site_id=row["site_id"], material_id=row["material_id"],
        committed_qty=to_decimal(row["committed_qty"]), valid_from=row["valid_from"], valid_to=row["valid_to"],
        standby_fee_minor_per_unit_day=to_decimal(row["standby_fee_minor_per_unit_day"]),
        call_off_price_minor_per_unit=int(row["call_off_price_minor_per_unit"]),
        min_response_minutes=int(row["min_response_minutes"]),
        penalty_minor_per_unit=int(row["penalty_minor_per_unit"]),
        penalty_grace_share=to_decimal(row.get("penalty_grace_share", 0)),
        late_penalty_minor_per_unit=int(row.get("late_penalty_minor_per_unit", 0)),
    )
