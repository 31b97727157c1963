"""Helpers shared by the schema modules."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, ValidationError

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


def check_keys(obj: dict, allowed: set[str], what: str = "") -> None:
    """Reject fields the schema does not know: a typo must not be silently dropped."""
    extra = set(obj) - allowed
    if extra:
        prefix = f"{what}: " if what else ""
        raise SchemaError(f"{prefix}unknown field(s): {', '.join(sorted(extra))}")


#: Versioning rule for payloads from devices and carriers (MQTT stock reports, order statuses):
#: a field the schema does not know is ignored by the checks and kept as it came (forwarded /
#: stored), so a vendor's newer firmware or a carrier's own fields (``battery_pct``, ``vehicle``)
#: do not break v1; known fields stay strict; a different ``v`` is refused. Bounded, so extras
#: cannot be used to smuggle bulk data: at most this many unknown fields per object ...
MAX_EXTRA_FIELDS = 16
#: ... each name at most this many characters.
MAX_EXTRA_NAME = 64


def split_extra(obj: dict, known: set[str], what: str = "", reserved: frozenset[str] = frozenset()) -> dict:
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


def require_str(obj: dict, field: str, max_len: int = 128) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise SchemaError(f"{field} longer than {max_len} characters")
    return value


def loads_object(raw: bytes | str, what: str, max_bytes: int = MAX_RECORD_BYTES) -> dict:
    """Decode JSON that must be an object, through the one safe decoder (:mod:`vreserve.decode`):
    size limit, bounded nesting, no NUL, strict UTF-8; NaN/Infinity literals are rejected."""
    return decode_object(raw, what, max_bytes)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(timezone.utc)
    try:
        return parse_ts(value, "timestamp")
    except SchemaError as exc:
        raise ValueError(str(exc)) from None


#: An instant in a record: RFC 3339 with an explicit offset in, UTC with milliseconds and ``Z`` out.
UtcTime = Annotated[datetime, BeforeValidator(_utc),
                    PlainSerializer(format_ts, return_type=str, when_used="json")]


class Frozen(BaseModel):
    """Base of the declarative record parts: immutable, unknown names refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def validation_reason(exc: ValidationError, what: str) -> str:
    """A pydantic error as one line a person can act on: each field's dotted path and the reason."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"{what}: " + "; ".join(parts) + more
