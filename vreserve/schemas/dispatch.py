"""Dispatcher records: mode events, mode errors, dispatch orders and cancel records, order status,
plan summaries. All plain JSON with a version field ``v``; decoding is strict and raises
:class:`SchemaError` with a reason a person can read.

Topics (logical names in :mod:`vreserve.topics`):

* ``mode`` keyed by region: :class:`ModeEvent` (``kind`` = ``declare`` or ``end``).
* ``mode.errors`` keyed by region (or ``"?"``): :class:`ModeError` for events that changed nothing.
* ``dispatch-orders`` keyed by destination: :class:`DispatchOrder` (``kind`` = ``order``) and
  :class:`CancelRecord` (``kind`` = ``cancel``) - the cancel is keyed by the cancelled order's
  destination, so it lands in the same partition, after the order it cancels.
* ``order-status`` keyed by order id: :class:`OrderStatus`, from the logistics system.
* ``plans`` keyed by region: :class:`PlanSummary`.

The full contract for real logistics systems is in ``docs/dispatcher.md``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from vreserve.schemas.common import (
    Frozen,
    SchemaError,
    UtcTime,
    check_keys,
    check_version,
    dumps,
    finite_number,
    format_ts,
    loads_object,
    parse_ts,
    require_str,
    split_extra,
    validation_reason,
)

VERSION = 1
#: Dispatch orders carrying what a carrier needs (:class:`CarrierDetails`) are version 2: every v1
#: field keeps its name, type and meaning, the details are added. A consumer of v1 that refuses a
#: different ``v`` (the project's rule) refuses them loudly instead of misreading them.
ORDER_VERSION = 2
#: How goods must be handled on the road (a carrier picks the vehicle by it).
HANDLING_CLASSES = ("ambient", "chilled", "frozen", "fragile", "flammable", "corrosive")
PLACE_KINDS = ("site", "distribution_centre", "rescue_centre")
MODE_KINDS = ("declare", "end")
LEGS = ("supply", "delivery")
#: Statuses a logistics system may report; ``cancelled`` confirms a cancel record was honoured.
LOGISTICS_STATUSES = ("accepted", "in_transit", "delivered", "failed", "cancelled")
#: Statuses of an order in the dispatcher's book (``closed``: open when the emergency ended).
ORDER_STATUSES = ("open", "accepted", "in_transit", "delivered", "failed", "cancelled", "closed")
FINAL_STATUSES = ("delivered", "failed", "cancelled", "closed")
#: Largest mode event accepted, in bytes.
MAX_MODE_EVENT_BYTES = 16 * 1024


def stable_id(prefix: str, *parts: object, length: int = 16) -> str:
    """A deterministic id from its inputs: the same inputs always give the same id (replays, restarts)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:length]}"


def _opt_str(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"{key} must be a string")
    return value


# --------------------------------------------------------------------------- mode events
@dataclass(frozen=True)
class ModeEvent:
    """An operator's normal/emergency conversion for one region.

    ``declare`` carries the scope (grid cells; empty = the whole region), the horizon (periods and
    period length in seconds) and where demand comes from (a scenario pack name or a file path).
    ``demand_scale`` multiplies the demand file's numbers (a pack sized for a whole city mapped onto a
    smaller live registry, e.g. in the demo); 1.0 = as given.
    """

    event_id: str
    kind: str
    region: str
    at: datetime
    actor: str
    reason: str
    grid_cells: tuple[str, ...] = ()
    periods: int | None = None
    period_length_s: float | None = None
    demand_source: str | None = None
    demand_scale: float = 1.0

    def to_payload(self) -> dict:
        out: dict[str, Any] = {
            "v": VERSION,
            "event_id": self.event_id,
            "kind": self.kind,
            "region": self.region,
            "at": format_ts(self.at),
            "actor": self.actor,
            "reason": self.reason,
        }
        if self.kind == "declare":
            out.update(
                grid_cells=list(self.grid_cells),
                periods=self.periods,
                period_length_s=self.period_length_s,
                demand_source=self.demand_source,
                demand_scale=self.demand_scale,
            )
        return out

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ModeEvent":
        if len(raw) > MAX_MODE_EVENT_BYTES:
            raise SchemaError(f"mode event larger than {MAX_MODE_EVENT_BYTES} bytes")
        return cls.from_payload(loads_object(raw, "mode event"))

    @classmethod
    def from_payload(cls, obj: dict) -> "ModeEvent":
        check_version(obj, VERSION, "mode event")
        kind = obj.get("kind")
        if kind not in MODE_KINDS:
            raise SchemaError(f"mode event: kind must be one of {', '.join(MODE_KINDS)}, got {kind!r}")
        base = {"v", "event_id", "kind", "region", "at", "actor", "reason"}
        declare_keys = {"grid_cells", "periods", "period_length_s", "demand_source", "demand_scale"}
        check_keys(obj, base | declare_keys if kind == "declare" else base, "mode event")
        event = dict(
            event_id=require_str(obj, "event_id"),
            kind=kind,
            region=require_str(obj, "region"),
            at=parse_ts(obj.get("at"), "at"),
            actor=require_str(obj, "actor"),
            reason=require_str(obj, "reason", max_len=1000),
        )
        if kind == "end":
            return cls(**event)
        cells = obj.get("grid_cells", [])
        if not isinstance(cells, list) or not all(isinstance(c, str) and c for c in cells):
            raise SchemaError("grid_cells must be a list of non-empty strings")
        periods = obj.get("periods")
        if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= 366:
            raise SchemaError("periods must be an integer between 1 and 366")
        length = finite_number(obj.get("period_length_s"), "period_length_s")
        if length <= 0:
            raise SchemaError("period_length_s must be positive")
        scale = finite_number(obj.get("demand_scale", 1.0), "demand_scale")
        if scale <= 0:
            raise SchemaError("demand_scale must be positive")
        return cls(
            **event,
            grid_cells=tuple(cells),
            periods=periods,
            period_length_s=length,
            demand_source=require_str(obj, "demand_source", max_len=1000),
            demand_scale=scale,
        )


@dataclass(frozen=True)
class ModeError:
    """Why a mode event changed nothing; ``raw`` keeps (the start of) what was received."""

    error: str
    at: datetime
    raw: str
    event_id: str | None = None
    region: str | None = None
    kind: str | None = None

    def to_payload(self) -> dict:
        return {
            "v": VERSION,
            "error": self.error,
            "at": format_ts(self.at),
            "raw": self.raw,
            "event_id": self.event_id,
            "region": self.region,
            "kind": self.kind,
        }

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ModeError":
        obj = loads_object(raw, "mode error")
        check_version(obj, VERSION, "mode error")
        return cls(
            error=require_str(obj, "error", 2000),
            at=parse_ts(obj.get("at"), "at"),
            raw=obj.get("raw") or "",
            event_id=_opt_str(obj, "event_id"),
            region=_opt_str(obj, "region"),
            kind=_opt_str(obj, "kind"),
        )


# --------------------------------------------------------------------------- orders
_Text = Field(min_length=1, max_length=300)


class Contact(Frozen):
    """Who answers at a place: the person or desk a driver calls on arrival."""

    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)
    email: str | None = Field(None, max_length=200)


class OrderEnd(Frozen):
    """One end of an order as a carrier needs it: where it is and whom to call.

    ``lat`` / ``lon`` in decimal degrees (WGS 84); ``address``, coordinates and ``contact`` are null
    when the registry or the scenario file does not state them (never invented)."""

    id: str = _Text
    kind: Literal["site", "distribution_centre", "rescue_centre"]
    name: str = _Text
    address: str | None = Field(None, max_length=500)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    contact: Contact | None = None


class TimeWindow(Frozen):
    """From ``start`` to ``end`` (UTC instants)."""

    start: UtcTime
    end: UtcTime


class MaterialDetails(Frozen):
    """How one unit of the ordered material travels. ``weight_kg_per_unit`` in kilograms,
    ``volume_m3_per_unit`` in cubic metres, per one ``unit`` of the order; null when the registry
    does not state them."""

    name: str = _Text
    handling: Literal["ambient", "chilled", "frozen", "fragile", "flammable", "corrosive"] | None = None
    weight_kg_per_unit: float | None = Field(None, gt=0, allow_inf_nan=False)
    volume_m3_per_unit: float | None = Field(None, gt=0, allow_inf_nan=False)


class CarrierDetails(Frozen):
    """What a logistics company needs to act on an order (dispatch order contract v2).

    ``pick_window``: when the goods can be picked at the origin; ``delivery_window``: when the
    destination takes them (both within the order's period). ``accept_by``: an order nobody has
    accepted by then may be superseded by the next period's plan (null in the last period: no later
    plan comes). ``total_weight_kg`` / ``total_volume_m3``: the order's qty times the per-unit
    figures (null when those are not stated)."""

    origin_place: OrderEnd
    destination_place: OrderEnd
    pick_window: TimeWindow
    delivery_window: TimeWindow
    accept_by: UtcTime | None
    material_details: MaterialDetails
    total_weight_kg: float | None = Field(None, ge=0, allow_inf_nan=False)
    total_volume_m3: float | None = Field(None, ge=0, allow_inf_nan=False)


#: The top-level fields a v2 order adds to v1's.
DETAIL_FIELDS = tuple(CarrierDetails.model_fields)
_ORDER_V1_FIELDS = {"v", "kind", "order_id", "plan_id", "emergency_id", "region", "period", "leg",
                    "origin", "destination", "material", "qty", "unit", "created_at"}


def carrier_details_from(obj: Any) -> "CarrierDetails | None":
    """Carrier details from their JSON form (a stored row's jsonb, a record's fields)."""
    if obj is None or isinstance(obj, CarrierDetails):
        return obj
    try:
        return CarrierDetails.model_validate(obj)
    except ValidationError as exc:
        raise SchemaError(validation_reason(exc, "dispatch order")) from None


@dataclass(frozen=True)
class DispatchOrder:
    """One leg of one material in one period of one plan.

    ``leg`` = ``supply``: pick at site ``origin`` and carry to distribution centre ``destination``;
    ``delivery``: from distribution centre ``origin`` to rescue centre ``destination``. ``qty`` is in
    ``unit`` (the material's unit). ``order_id`` is derived from (plan, leg, origin, destination,
    material), so a republished order keeps its id. ``details`` (both ends, windows, accept-by,
    material handling) makes it a v2 order; without them it is published as v1.
    """

    order_id: str
    plan_id: str
    emergency_id: str
    region: str
    period: int
    leg: str
    origin: str
    destination: str
    material: str
    qty: float
    unit: str
    created_at: datetime
    details: CarrierDetails | None = None

    kind = "order"

    def __post_init__(self) -> None:
        if self.details is not None and not isinstance(self.details, CarrierDetails):
            object.__setattr__(self, "details", carrier_details_from(self.details))

    @staticmethod
    def make_id(plan_id: str, leg: str, origin: str, destination: str, material: str) -> str:
        return stable_id("O", plan_id, leg, origin, destination, material)

    def to_payload(self) -> dict:
        out = {
            "v": VERSION,
            "kind": "order",
            "order_id": self.order_id,
            "plan_id": self.plan_id,
            "emergency_id": self.emergency_id,
            "region": self.region,
            "period": self.period,
            "leg": self.leg,
            "origin": self.origin,
            "destination": self.destination,
            "material": self.material,
            "qty": self.qty,
            "unit": self.unit,
            "created_at": format_ts(self.created_at),
        }
        if self.details is not None:
            out.update(self.details.model_dump(mode="json"), v=ORDER_VERSION)
        return out

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_payload(cls, obj: dict) -> "DispatchOrder":
        if obj.get("v") not in (VERSION, ORDER_VERSION):
            raise SchemaError(f"unsupported dispatch order version v={obj.get('v')!r}, expected "
                              f"{ORDER_VERSION} (or {VERSION}, without carrier details)")
        v2 = obj["v"] == ORDER_VERSION
        check_keys(obj, _ORDER_V1_FIELDS | set(DETAIL_FIELDS) if v2 else _ORDER_V1_FIELDS, "dispatch order")
        details = carrier_details_from({k: obj.get(k) for k in DETAIL_FIELDS}) if v2 else None
        leg = obj.get("leg")
        if leg not in LEGS:
            raise SchemaError(f"leg must be one of {', '.join(LEGS)}")
        period = obj.get("period")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise SchemaError("period must be a positive integer")
        qty = finite_number(obj.get("qty"), "qty")
        if qty <= 0:
            raise SchemaError("qty must be positive")
        return cls(
            order_id=require_str(obj, "order_id"),
            plan_id=require_str(obj, "plan_id"),
            emergency_id=require_str(obj, "emergency_id"),
            region=require_str(obj, "region"),
            period=period,
            leg=leg,
            origin=require_str(obj, "origin"),
            destination=require_str(obj, "destination"),
            material=require_str(obj, "material"),
            qty=qty,
            unit=require_str(obj, "unit"),
            created_at=parse_ts(obj.get("created_at"), "created_at"),
            details=details,
        )


@dataclass(frozen=True)
class CancelRecord:
    """Withdraws an order not yet executed: superseded by a newer plan, or closed when the emergency ended.

    A logistics system that has not picked the goods yet drops the order and answers ``cancelled``;
    one that already picked them carries on and reports what really happened.
    """

    order_id: str
    emergency_id: str
    destination: str
    reason: str
    at: datetime
    superseded_by: str | None = None

    kind = "cancel"

    def to_payload(self) -> dict:
        return {
            "v": VERSION,
            "kind": "cancel",
            "order_id": self.order_id,
            "emergency_id": self.emergency_id,
            "destination": self.destination,
            "reason": self.reason,
            "at": format_ts(self.at),
            "superseded_by": self.superseded_by,
        }

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_payload(cls, obj: dict) -> "CancelRecord":
        check_version(obj, VERSION, "cancel record")
        check_keys(obj, {"v", "kind", "order_id", "emergency_id", "destination", "reason", "at",
                          "superseded_by"}, "cancel record")
        return cls(
            order_id=require_str(obj, "order_id"),
            emergency_id=require_str(obj, "emergency_id"),
            destination=require_str(obj, "destination"),
            reason=require_str(obj, "reason", 1000),
            at=parse_ts(obj.get("at"), "at"),
            superseded_by=_opt_str(obj, "superseded_by"),
        )


def decode_dispatch_record(raw: bytes | str) -> DispatchOrder | CancelRecord:
    """Decode one record of the dispatch-orders topic (an order or a cancel)."""
    obj = loads_object(raw, "dispatch record")
    kind = obj.get("kind")
    if kind == "order":
        return DispatchOrder.from_payload(obj)
    if kind == "cancel":
        return CancelRecord.from_payload(obj)
    raise SchemaError(f"dispatch record: kind must be 'order' or 'cancel', got {kind!r}")


@dataclass(frozen=True)
class OrderStatus:
    """A logistics system's report on one order. ``status_id`` de-duplicates replays."""

    order_id: str
    status: str
    at: datetime
    qty: float | None = None
    reason: str | None = None
    status_id: str = ""
    #: fields the contract does not know (a carrier's ``vehicle``): kept as they came, not checked
    extra: dict = field(default_factory=dict, compare=False)
    #: Who reported it, as authenticated by the API (``carrier:<id>``); absent on records that
    #: logistics systems publish to the topic themselves (older producers omit it).
    actor: str | None = None

    def __post_init__(self) -> None:
        if not self.status_id:
            object.__setattr__(self, "status_id", stable_id("S", self.order_id, self.status))

    def to_payload(self) -> dict:
        out = {
            **self.extra,
            "v": VERSION,
            "status_id": self.status_id,
            "order_id": self.order_id,
            "status": self.status,
            "at": format_ts(self.at),
            "qty": self.qty,
            "reason": self.reason,
        }
        if self.actor is not None:
            out["actor"] = self.actor
        return out

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "OrderStatus":
        obj = loads_object(raw, "order status")
        check_version(obj, VERSION, "order status")
        extra = split_extra(obj, {"v", "status_id", "order_id", "status", "at", "qty", "reason", "actor"},
                            "order status")
        status = obj.get("status")
        if status not in LOGISTICS_STATUSES:
            raise SchemaError(f"status must be one of {', '.join(LOGISTICS_STATUSES)}, got {status!r}")
        qty = obj.get("qty")
        if qty is not None:
            qty = finite_number(qty, "qty")
            if qty < 0:
                raise SchemaError("qty must not be negative")
        if status == "delivered" and qty is None:
            raise SchemaError("a delivered status must carry the delivered qty")
        if status == "failed" and not obj.get("reason"):
            raise SchemaError("a failed status must carry a reason")
        return cls(
            order_id=require_str(obj, "order_id"),
            status=status,
            at=parse_ts(obj.get("at"), "at"),
            qty=qty,
            reason=_opt_str(obj, "reason"),
            status_id=require_str(obj, "status_id"),
            extra=extra,
            actor=_opt_str(obj, "actor"),
        )


@dataclass(frozen=True)
class StatusError:
    """Why an order status was refused (topic ``order-status.errors``, keyed by order id).

    ``raw`` keeps (the start of) what was received, so the carrier can match it to what it sent.
    """

    error: str
    at: datetime
    raw: str
    status_id: str | None = None
    order_id: str | None = None
    status: str | None = None

    def to_payload(self) -> dict:
        return {"v": VERSION, "error": self.error, "at": format_ts(self.at), "raw": self.raw,
                "status_id": self.status_id, "order_id": self.order_id, "status": self.status}

    def to_json(self) -> bytes:
        return dumps(self.to_payload())


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class PlanSummary:
    """One plan's figures (per region and period), as published on the plans topic and stored."""

    plan_id: str
    emergency_id: str
    region: str
    period: int
    created_at: datetime
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    solve_seconds: float | None
    #: seconds spent in snapshot, build, solve, persist (publish is known only after publishing)
    timings_s: dict[str, float] = field(default_factory=dict)
    orders: int = 0
    cancelled: int = 0
    supply_nodes: int = 0
    #: per material: {"unit", "available", "demand", "planned_delivery", "planned_shortage"}
    materials: dict[str, dict] = field(default_factory=dict)
    message: str = ""

    def to_payload(self) -> dict:
        out = asdict(self)
        out["v"] = VERSION
        out["created_at"] = format_ts(self.created_at)
        return out

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "PlanSummary":
        obj = loads_object(raw, "plan summary")
        check_version(obj, VERSION, "plan summary")
        obj = dict(obj)
        obj.pop("v")
        obj["created_at"] = parse_ts(obj.get("created_at"), "created_at")
        try:
            return cls(**obj)
        except TypeError as exc:
            raise SchemaError(f"plan summary: {exc}") from None


# --------------------------------------------------------------------------- demand updates
@dataclass(frozen=True)
class DemandUpdate:
    """A rescue centre's new demand for one material in one period of its region's emergency.

    Topic ``demand``, keyed by rescue centre. ``qty`` (in the material's unit) replaces the demand
    file's figure for that period (after ``demand_scale``, i.e. it is taken as given); the latest
    ``at`` wins; ``update_id`` de-duplicates replays.
    """

    update_id: str
    region: str
    rescue_centre: str
    material: str
    period: int
    qty: float
    at: datetime

    def to_payload(self) -> dict:
        return {"v": VERSION, "update_id": self.update_id, "region": self.region,
                "rescue_centre": self.rescue_centre, "material": self.material, "period": self.period,
                "qty": self.qty, "at": format_ts(self.at)}

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_json(cls, raw: bytes | str) -> "DemandUpdate":
        obj = loads_object(raw, "demand update")
        check_version(obj, VERSION, "demand update")
        check_keys(obj, {"v", "update_id", "region", "rescue_centre", "material", "period", "qty", "at"},
                    "demand update")
        period = obj.get("period")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise SchemaError("period must be a positive integer")
        qty = finite_number(obj.get("qty"), "qty")
        if qty < 0:
            raise SchemaError("qty must not be negative")
        return cls(update_id=require_str(obj, "update_id"), region=require_str(obj, "region"),
                   rescue_centre=require_str(obj, "rescue_centre"), material=require_str(obj, "material"),
                   period=period, qty=qty, at=parse_ts(obj.get("at"), "at"))
