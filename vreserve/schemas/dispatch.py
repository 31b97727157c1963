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
from dataclasses import field, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StrictInt, ValidationError
from pydantic.dataclasses import dataclass

from vreserve.schemas.common import (
    Frozen,
    Number,
    Ordinal,
    Quantity,
    Record,
    SchemaError,
    Text,
    UtcTime,
    check_keys,
    loads_object,
    number,
    said,
    text,
    validation_reason,
)

VERSION = 1
#: Dispatch orders carrying what a carrier needs (:class:`CarrierDetails`) are version 2: every v1
#: field keeps its name, type and meaning, the details are added. A consumer of v1 that refuses a
#: different ``v`` (the project's rule) refuses them loudly instead of misreading them.
ORDER_VERSION = 2
MODE_KINDS = ("declare", "end")
LEGS = ("supply", "delivery")
#: Statuses a logistics system may report; ``cancelled`` confirms a cancel record was honoured.
LOGISTICS_STATUSES = ("accepted", "in_transit", "delivered", "failed", "cancelled")
#: Statuses of an order in the dispatcher's book (``closed``: open when the emergency ended).
ORDER_STATUSES = ("open", "accepted", "in_transit", "delivered", "failed", "cancelled", "closed")
#: Order statuses after which the order moves no more in the dispatcher's book.
SETTLED_ORDER_STATUSES = ("delivered", "failed", "cancelled", "closed")
#: How goods must be handled on the road (a carrier picks the vehicle by it).
HANDLING_CLASSES = ("ambient", "chilled", "frozen", "fragile", "flammable", "corrosive")
PLACE_KINDS = ("site", "distribution_centre", "rescue_centre")
#: Largest mode event accepted, in bytes.
MAX_MODE_EVENT_BYTES = 16 * 1024

Positive = number(gt=0)


def stable_id(prefix: str, *parts: object, length: int = 16) -> str:
    """A deterministic id from its inputs: the same inputs always give the same id (replays, restarts)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:length]}"


# --------------------------------------------------------------------------- mode events
_MODE_BASE = frozenset({"v", "event_id", "kind", "region", "at", "actor", "reason"})
_MODE_DECLARE = frozenset({"grid_cells", "periods", "period_length_s", "demand_source", "demand_scale"})


@dataclass(frozen=True)
class ModeEvent(Record):
    """An operator's normal/emergency conversion for one region.

    ``declare`` carries the scope (grid cells; empty = the whole region), the horizon (periods and
    period length in seconds) and where demand comes from (a scenario pack name or a file path).
    ``demand_scale`` multiplies the demand file's numbers (a pack sized for a whole city mapped onto a
    smaller live registry, e.g. in the demo); 1.0 = as given. An ``end`` carries none of them.
    """

    WHAT: ClassVar[str] = "mode event"
    MAX_BYTES: ClassVar[int] = MAX_MODE_EVENT_BYTES

    event_id: Text
    kind: Literal["declare", "end"]
    region: Text
    at: UtcTime
    actor: Text
    reason: text(1000)
    grid_cells: tuple[Text, ...] = ()
    periods: Annotated[StrictInt, Field(ge=1, le=366)] | None = None
    period_length_s: number(gt=0) | None = None
    demand_source: text(1000) | None = None
    demand_scale: number(gt=0) = 1.0

    @classmethod
    def validate(cls, obj: dict) -> "ModeEvent":
        kind = obj.get("kind")
        if kind not in MODE_KINDS:
            raise SchemaError(f"mode event: kind must be one of {', '.join(MODE_KINDS)}, got {kind!r}")
        check_keys(obj, _MODE_BASE | _MODE_DECLARE if kind == "declare" else _MODE_BASE, "mode event")
        if kind == "declare":
            missing = [k for k in ("periods", "period_length_s", "demand_source") if obj.get(k) is None]
            if missing:
                raise SchemaError(f"mode event: a declare needs {', '.join(missing)}")
        return super().validate(obj)

    def _wire_out(self, payload: dict) -> dict:
        return payload if self.kind == "declare" else {k: v for k, v in payload.items() if k in _MODE_BASE}

    @classmethod
    def from_json(cls, raw: bytes | str) -> "ModeEvent":
        if len(raw) > MAX_MODE_EVENT_BYTES:
            raise SchemaError(f"mode event larger than {MAX_MODE_EVENT_BYTES} bytes")
        return cls.from_payload(loads_object(raw, "mode event"))


@dataclass(frozen=True)
class ModeError(Record):
    """Why a mode event changed nothing; ``raw`` keeps (the start of) what was received."""

    WHAT: ClassVar[str] = "mode error"
    UNKNOWN: ClassVar[str] = "ignore"

    error: said(2000)
    at: UtcTime
    raw: str = ""
    event_id: str | None = None
    region: str | None = None
    kind: str | None = None

    @classmethod
    def _wire_in(cls, fields: dict) -> dict:
        return {**fields, "raw": fields.get("raw") or ""}


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


def carrier_details_from(obj: Any) -> CarrierDetails | None:
    """Carrier details from their JSON form (a stored row's jsonb, a record's fields)."""
    if obj is None or isinstance(obj, CarrierDetails):
        return obj
    try:
        return CarrierDetails.model_validate(obj)
    except ValidationError as exc:
        raise SchemaError(validation_reason(exc, "dispatch order")) from None


@dataclass(frozen=True)
class DispatchOrder(Record):
    """One leg of one material in one period of one plan.

    ``leg`` = ``supply``: pick at site ``origin`` and carry to distribution centre ``destination``;
    ``delivery``: from distribution centre ``origin`` to rescue centre ``destination``. ``qty`` is in
    ``unit`` (the material's unit). ``order_id`` is derived from (plan, leg, origin, destination,
    material), so a republished order keeps its id. ``details`` (both ends, windows, accept-by,
    material handling) makes it a v2 order; without them it is published as v1.
    """

    WHAT: ClassVar[str] = "dispatch order"
    kind: ClassVar[str] = "order"

    order_id: Text
    plan_id: Text
    emergency_id: Text
    region: Text
    period: Ordinal
    leg: Literal["supply", "delivery"]
    origin: Text
    destination: Text
    material: Text
    qty: Positive
    unit: Text
    created_at: UtcTime
    details: CarrierDetails | None = None

    @staticmethod
    def make_id(plan_id: str, leg: str, origin: str, destination: str, material: str) -> str:
        return stable_id("O", plan_id, leg, origin, destination, material)

    @classmethod
    def wire_fields(cls) -> frozenset[str]:
        return super().wire_fields() - {"details"} | {"kind"}

    def _wire_out(self, payload: dict) -> dict:
        details = payload.pop("details")
        payload["kind"] = "order"
        if details is not None:
            payload.update(details, v=ORDER_VERSION)
        return payload

    @classmethod
    def from_payload(cls, obj: dict) -> "DispatchOrder":
        if obj.get("v") not in (VERSION, ORDER_VERSION):
            raise SchemaError(f"unsupported dispatch order version v={obj.get('v')!r}, expected "
                              f"{ORDER_VERSION} (or {VERSION}, without carrier details)")
        if obj["v"] == VERSION:
            return cls.validate(obj)
        check_keys(obj, cls.wire_fields() | set(DETAIL_FIELDS), cls.WHAT)
        details = carrier_details_from({k: obj.get(k) for k in DETAIL_FIELDS})
        return replace(cls.validate({k: v for k, v in obj.items() if k not in DETAIL_FIELDS}), details=details)


@dataclass(frozen=True)
class CancelRecord(Record):
    """Withdraws an order not yet executed: superseded by a newer plan, or closed when the emergency ended.

    A logistics system that has not picked the goods yet drops the order and answers ``cancelled``;
    one that already picked them carries on and reports what really happened.
    """

    WHAT: ClassVar[str] = "cancel record"
    kind: ClassVar[str] = "cancel"

    order_id: Text
    emergency_id: Text
    destination: Text
    reason: said(1000)
    at: UtcTime
    superseded_by: str | None = None

    @classmethod
    def wire_fields(cls) -> frozenset[str]:
        return super().wire_fields() | {"kind"}

    def _wire_out(self, payload: dict) -> dict:
        payload["kind"] = "cancel"
        return payload


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
class OrderStatus(Record):
    """A logistics system's report on one order. ``status_id`` de-duplicates replays (derived from
    the order and the status when not given). From carriers: unknown fields are kept."""

    WHAT: ClassVar[str] = "order status"
    UNKNOWN: ClassVar[str] = "keep"

    order_id: Text
    status: Literal["accepted", "in_transit", "delivered", "failed", "cancelled"]
    at: UtcTime
    qty: Quantity | None = None
    reason: str | None = None
    status_id: str = ""
    #: fields the contract does not know (a carrier's ``vehicle``): kept as they came, not checked
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Who reported it, as authenticated by the API (``carrier:<id>``); absent on records that
    #: logistics systems publish to the topic themselves (older producers omit it).
    actor: str | None = None

    def __post_init__(self) -> None:
        if not self.status_id:
            object.__setattr__(self, "status_id", stable_id("S", self.order_id, self.status))

    @classmethod
    def validate(cls, obj: dict) -> "OrderStatus":
        if not isinstance(obj.get("status_id"), str) or not obj["status_id"]:
            raise SchemaError("status_id must be a non-empty string")
        status = super().validate(obj)
        if status.status == "delivered" and status.qty is None:
            raise SchemaError("a delivered status must carry the delivered qty")
        if status.status == "failed" and not status.reason:
            raise SchemaError("a failed status must carry a reason")
        return status

    def _wire_out(self, payload: dict) -> dict:
        if self.actor is None:
            del payload["actor"]
        return payload


@dataclass(frozen=True)
class StatusError(Record):
    """Why an order status was refused (topic ``order-status.errors``, keyed by order id).

    ``raw`` keeps (the start of) what was received, so the carrier can match it to what it sent.
    """

    WHAT: ClassVar[str] = "order status error"
    UNKNOWN: ClassVar[str] = "ignore"

    error: said(2000)
    at: UtcTime
    raw: str
    status_id: str | None = None
    order_id: str | None = None
    status: str | None = None


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class PlanSummary(Record):
    """One plan's figures (per region and period), as published on the plans topic and stored."""

    WHAT: ClassVar[str] = "plan summary"

    plan_id: Text
    emergency_id: Text
    region: Text
    period: Ordinal
    created_at: UtcTime
    status: Text
    objective: Number | None
    bound: Number | None
    gap: Number | None
    solve_seconds: Number | None
    #: seconds spent in snapshot, build, solve, persist (publish is known only after publishing)
    timings_s: dict[str, float] = field(default_factory=dict)
    orders: int = 0
    cancelled: int = 0
    supply_nodes: int = 0
    #: per material: {"unit", "available", "demand", "planned_delivery", "planned_shortage"}
    materials: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str = ""


# --------------------------------------------------------------------------- demand updates
@dataclass(frozen=True)
class DemandUpdate(Record):
    """A rescue centre's new demand for one material in one period of its region's emergency.

    Topic ``demand``, keyed by rescue centre. ``qty`` (in the material's unit) replaces the demand
    file's figure for that period (after ``demand_scale``, i.e. it is taken as given); the latest
    ``at`` wins; ``update_id`` de-duplicates replays.
    """

    WHAT: ClassVar[str] = "demand update"

    update_id: Text
    region: Text
    rescue_centre: Text
    material: Text
    period: Ordinal
    qty: Quantity
    at: UtcTime
