"""The one codec every record contract uses, and the field types the contracts are made of.

A record type is a frozen pydantic dataclass that derives from :class:`Record` and states, as
class variables, its name for people (``WHAT``), its version (``VERSION``), its size limit and its
rule for fields it does not know (``UNKNOWN``):

* ``"refuse"``: the project's own records (a typo must not be silently dropped);
* ``"keep"``: payloads from devices and carriers (MQTT stock reports, order statuses): a field the
  contract does not know is ignored by the checks and kept as it came (``extra``), bounded, so a
  vendor's newer firmware or a carrier's own fields do not break v1; known fields stay strict;
* ``"ignore"``: records the project reads only for what it knows (alerts, dead letters, mode errors).

A different ``v`` is always refused. Decoding goes through the one safe decoder
(:mod:`vreserve.decode`) and every refusal is a :class:`SchemaError` naming the field and the reason.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StrictFloat, StrictInt,
                      StringConstraints, TypeAdapter, ValidationError)

from vreserve.decode import MAX_RECORD_BYTES, SchemaError, decode_object


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_ts(ts: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a ``Z`` suffix."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(value: Any, field: str = "ts") -> datetime:
    """Parse an RFC 3339 timestamp that carries an explicit offset (``Z`` or ``+hh:mm``)."""
    if not isinstance(value, str):
        raise SchemaError(f"{field} must be an RFC 3339 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError(f"{field} is not an RFC 3339 timestamp: {value[:40]!r}") from None
    if ts.tzinfo is None:
        raise SchemaError(f"{field} has no UTC offset: {value[:40]!r}")
    try:
        return ts.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise SchemaError(f"{field} is out of range in UTC: {value[:40]!r}") from None


def check_keys(obj: dict, allowed: set[str] | frozenset[str], what: str = "") -> None:
    """Reject fields the schema does not know: a typo must not be silently dropped."""
    extra = set(obj) - allowed
    if extra:
        prefix = f"{what}: " if what else ""
        raise SchemaError(f"{prefix}unknown field(s): {', '.join(sorted(extra))}")


#: The ``keep`` rule's bounds, so extras cannot be used to smuggle bulk data: at most this many
#: unknown fields per object ...
MAX_EXTRA_FIELDS = 16
#: ... each name at most this many characters.
MAX_EXTRA_NAME = 64


def split_extra(obj: dict, known: set[str] | frozenset[str], what: str = "",
                reserved: frozenset[str] = frozenset()) -> dict:
    """The fields of ``obj`` the schema does not know (kept, not checked); refuses too many,
    over-long names and ``reserved`` names (ones the record that carries them uses itself)."""
    extra = {k: v for k, v in obj.items() if k not in known}
    prefix = f"{what}: " if what else ""
    if len(extra) > MAX_EXTRA_FIELDS:
        raise SchemaError(f"{prefix}{len(extra)} unknown fields (at most {MAX_EXTRA_FIELDS} are kept)")
    bad = sorted(k for k in extra if len(k) > MAX_EXTRA_NAME or k in reserved)
    if bad:
        raise SchemaError(f"{prefix}field name(s) not allowed: {', '.join(b[:MAX_EXTRA_NAME] for b in bad)}"
                          f" (reserved, or longer than {MAX_EXTRA_NAME} characters)")
    return extra


def check_version(obj: dict, version: int, what: str) -> None:
    if obj.get("v") != version:
        raise SchemaError(f"unsupported {what} version v={obj.get('v')!r}, expected {version}")


def finite_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{field} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise SchemaError(f"{field} must be finite, got {value!r}")
    return float(value)


def loads_object(raw: bytes | str, what: str, max_bytes: int = MAX_RECORD_BYTES) -> dict:
    """Decode JSON that must be an object, through the one safe decoder (:mod:`vreserve.decode`):
    size limit, bounded nesting, no NUL, strict UTF-8; NaN/Infinity literals are rejected."""
    return decode_object(raw, what, max_bytes)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


# ----------------------------------------------------------------------------- field types
def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(timezone.utc)
    try:
        return parse_ts(value, "timestamp")
    except SchemaError as exc:
        raise ValueError(str(exc).removeprefix("timestamp ")) from None


def _number(value: Any) -> Any:
    # JSON numbers only (never "12" or true); database numerics and numpy floats from our own code
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError(f"must be a number, got {type(value).__name__}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: An instant: RFC 3339 with an explicit offset in, UTC with milliseconds and ``Z`` out.
UtcTime = Annotated[datetime, BeforeValidator(_utc), PlainSerializer(format_ts, return_type=str, when_used="json")]
def number(**bounds: float) -> Any:
    """A finite number (a JSON number, not a string or a boolean; a database numeric from our own
    code) within ``bounds`` (pydantic's ge / gt / le / lt)."""
    return Annotated[float, Field(allow_inf_nan=False, **bounds), BeforeValidator(_number)]


def count(**bounds: int) -> Any:
    """A whole number >= 0 (not a boolean, not 3.0) within ``bounds``."""
    return Annotated[int, Field(ge=0, **bounds), BeforeValidator(_count)]


Number = number()
#: A finite number >= 0, checked in the validator's own code (the stock report's hot path).
Quantity = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
Count = count()
#: A whole number >= 1.
Ordinal = Annotated[StrictInt, Field(ge=1)]
#: A non-empty identifier or label of at most 128 characters.
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]


def text(max_length: int) -> Any:
    """A non-empty string of at most ``max_length`` characters."""
    return Annotated[str, StringConstraints(strict=True, min_length=1, max_length=max_length)]


def said(max_length: int) -> Any:
    """Text the project writes for people (a reason, an error, an alert's message): cut at
    ``max_length`` characters rather than refused, so a record of a refusal can always be made."""
    return Annotated[str, Field(max_length=max_length),
                     BeforeValidator(lambda v: v[:max_length] if isinstance(v, str) else v)]


def items(kind: Any, max_length: int) -> Any:
    """A non-empty list (held as a tuple) of at most ``max_length`` ``kind``."""
    return Annotated[tuple[kind, ...], Field(min_length=1, max_length=max_length), BeforeValidator(_as_tuple)]


# ----------------------------------------------------------------------------- error reasons
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
             "bool_type": "true or false", "list_type": "a list", "tuple_type": "a list", "dict_type": "an object",
             "dataclass_type": "an object", "model_type": "an object", "dataclass_exact_type": "an object",
             "datetime_type": "an RFC 3339 string"}


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


#: Reasons by pydantic error type; the rest are worded in :func:`_reason`.
_TEMPLATES = {
    "missing": "{where} is required",
    "extra_forbidden": "{where}: unknown field",
    "string_too_short": "{where} must be a non-empty string",
    "string_too_long": "{where} longer than {max_length} characters",
    "too_short": "{where} must be a non-empty list",
    "too_long": "{where}: more than {max_length} items",
    "less_than_equal": "{where} must be at most {le}, got {got}",
    "less_than": "{where} must be below {lt}, got {got}",
    "finite_number": "{where} must be finite, got {got!r}",
    "literal_error": "{where} must be one of {expected}, got {got!r}",
}


class _Shown:
    """A refused value as a reason shows it: its repr, cut short (the reason must stay small even
    when the value is a megabyte)."""

    def __init__(self, value: Any):
        self.text = repr(value)
        self.text = self.text if len(self.text) <= 60 else self.text[:57] + "..."

    def __format__(self, spec: str) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def _reason(err: dict) -> str:
    kind, where, ctx = err["type"], _where(err.get("loc", ())), err.get("ctx") or {}
    got = _Shown(err.get("input"))
    if kind in _TEMPLATES:
        return _TEMPLATES[kind].format(where=where, got=got, **ctx)
    if kind in _EXPECTED:
        return f"{where} must be {_EXPECTED[kind]}, got {type(err.get('input')).__name__}"
    if kind == "greater_than_equal":
        return (f"{where} is negative: must be >= 0, got {got}" if ctx.get("ge") == 0
                else f"{where} must be >= {ctx.get('ge')}, got {got}")
    if kind == "greater_than":
        return f"{where} must be positive, got {got}" if ctx.get("gt") == 0 else f"{where} must be > {ctx.get('gt')}"
    if kind == "value_error":
        msg = str(ctx.get("error", err.get("msg", "")))[:300]
        if not where or msg.startswith(where):
            return msg
        return f"{where} {msg}" if msg.split(" ", 1)[0] in ("is", "must", "has", "longer") else f"{where}: {msg}"
    return f"{where}: {str(err.get('msg', 'invalid'))[:300]}" if where else str(err.get("msg", "invalid"))[:300]


def once_each(parts: Any, name: str, verb: str) -> None:
    """Refuse a list (readings, counts) that names one material twice: its two figures would
    contradict each other. Used by the records' ``mode="after"`` validators."""
    seen: set[str] = set()
    for i, part in enumerate(parts):
        if part.material in seen:
            raise ValueError(f"{name}[{i}]: material {part.material!r} {verb}")
        seen.add(part.material)


def validation_reason(exc: ValidationError, what: str = "") -> str:
    """A pydantic error as one line a person can act on: each field's dotted path and the reason."""
    errors = exc.errors(include_url=False)
    text_ = "; ".join(_reason(e) for e in errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
    return f"{what}: {text_}" if what else text_


# ----------------------------------------------------------------------------- the codec
@cache
def adapter(cls: type) -> TypeAdapter:
    """The validator / serializer of a record type, built once."""
    return TypeAdapter(cls)


class Record:
    """Base of a versioned record contract: to and from its JSON payload (see the module docstring).

    Hooks for a record whose wire form is not just its fields: :meth:`_wire_out` shapes the dumped
    fields into the payload, :meth:`_wire_in` the payload's fields into the constructor's."""

    WHAT: ClassVar[str] = "record"
    VERSION: ClassVar[int] = 1
    MAX_BYTES: ClassVar[int] = MAX_RECORD_BYTES
    UNKNOWN: ClassVar[str] = "refuse"
    #: names a kept extra may not take (the record that carries this one uses them)
    RESERVED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def wire_fields(cls) -> frozenset[str]:
        """The payload's known field names."""
        return frozenset(cls.__pydantic_fields__) - {"extra"} | {"v"}  # type: ignore[attr-defined]

    def to_payload(self) -> dict:
        out = adapter(type(self)).dump_python(self, mode="json")
        extra = out.pop("extra", None) or {}
        return self._wire_out({**extra, "v": self.VERSION, **out})

    def to_json(self) -> bytes:
        return dumps(self.to_payload())

    @classmethod
    def from_payload(cls, obj: dict):
        check_version(obj, cls.VERSION, cls.WHAT)
        return cls.validate(obj)

    @classmethod
    def validate(cls, obj: dict):
        """The record from a payload (``v`` not checked here), by its unknown-field rule."""
        known = cls.wire_fields()
        if cls.UNKNOWN == "refuse":
            check_keys(obj, known, cls.WHAT)
        data = cls._wire_in({k: v for k, v in obj.items() if k in known and k != "v"})
        if cls.UNKNOWN == "keep" and not obj.keys() <= known:
            data["extra"] = split_extra(obj, known, cls.WHAT, cls.RESERVED)
        try:
            return adapter(cls).validate_python(data)
        except ValidationError as exc:
            raise SchemaError(validation_reason(exc)) from None

    @classmethod
    def from_json(cls, raw: bytes | str):
        return cls.from_payload(loads_object(raw, cls.WHAT, cls.MAX_BYTES))

    def _wire_out(self, payload: dict) -> dict:
        """The payload from the dumped fields (override where the wire form differs)."""
        return payload

    @classmethod
    def _wire_in(cls, fields: dict) -> dict:
        """The constructor's arguments from the payload's known fields (override likewise)."""
        return fields


def kept_extra(obj: Any, known: frozenset[str], what: str) -> Any:
    """For a nested part under the ``keep`` rule (a reading in a stock report): its unknown fields
    moved into ``extra``. Used as a ``mode="before"`` validator."""
    if not isinstance(obj, dict) or obj.keys() <= known:
        return obj  # the common case: nothing unknown to keep
    data = {k: v for k, v in obj.items() if k in known}
    data["extra"] = split_extra(obj, known, what)
    return data


class Frozen(BaseModel):
    """Base of the declarative parts of records and files: immutable, unknown names refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
