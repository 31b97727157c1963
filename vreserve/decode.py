"""Decoding untrusted records: the one path every consumer's bytes go through before any use.

Why one place: a record from a site, a carrier or another team is data, never a reason to stop a
service. Every consumer (bridge, stream worker, dispatcher, audit consumer, logistics simulator)
decodes with :func:`decode_json`, which

* checks the size BEFORE parsing (a huge record costs nothing but a length comparison);
* parses with orjson, which refuses invalid UTF-8, lone surrogates, NaN/Infinity and nesting past
  1,024 levels with an ordinary error (Python's ``json`` raises ``RecursionError`` instead, which
  no consumer caught), then limits nesting to :data:`MAX_DEPTH` (no record of ours nests deeper
  than 4; a deep one would still overflow ``json.dumps`` or PostgreSQL's JSONB input later);
* refuses NUL characters anywhere in the text (PostgreSQL text and JSONB cannot hold ``\\u0000``).

Each failure is a :class:`SchemaError` with a reason a person reads; the
consumer stores the ORIGINAL bytes (bytea or base64) next to it, and uses :func:`safe_text` /
:func:`preview` for anything it writes into a text column or a log line.
"""
from __future__ import annotations

import re
from typing import Any

import orjson

class SchemaError(ValueError):
    """A payload does not match its schema; ``str(err)`` is the reason a person reads.

    Defined here (re-exported by :mod:`vreserve.schemas.common`) so the decoder has no import cycle."""


_CONSTANT = re.compile(r"[:\[,]\s*(-?Infinity|NaN)\b")

#: Largest record any consumer parses, in bytes (a consumer may pass a smaller limit). Below
#: Kafka's default 1 MB message limit, so a dead letter of the largest record still fits.
MAX_RECORD_BYTES = 512 * 1024
#: Deepest nesting of arrays/objects accepted (our records nest at most 4 levels).
MAX_DEPTH = 32


def decode_json(raw: bytes | bytearray | memoryview | str | None, what: str,
                max_bytes: int = MAX_RECORD_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one untrusted JSON record; raises :class:`SchemaError` (never anything else) on bad input."""
    if raw is None:
        raise SchemaError(f"{what} is empty (no value)")
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if not isinstance(raw, (bytes, bytearray, str)):
        raise SchemaError(f"{what} must be bytes or text, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise SchemaError(f"{what} of {len(raw)} bytes exceeds the {max_bytes} byte limit")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(_why_not_json(raw, what, exc)) from None
    except (TypeError, ValueError, RecursionError, MemoryError) as exc:  # orjson's own guards
        raise SchemaError(f"{what} cannot be parsed: {type(exc).__name__}") from None
    _check_shape(raw, obj, what, max_depth)
    return obj


def _why_not_json(raw: bytes | bytearray | str, what: str, exc: ValueError) -> str:
    """The reason a person reads: invalid UTF-8 said as such, else orjson's message and position."""
    if not isinstance(raw, str):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"{what} is not UTF-8 text (invalid byte at offset {bad.start})"
    constant = _CONSTANT.search(raw if isinstance(raw, str) else bytes(raw).decode("utf-8"))
    if constant:  # JSON has no NaN/Infinity; Python's json would have parsed them into floats
        return f"{what} is not valid JSON: non-finite number {constant.group(1)} is not allowed"
    return f"{what} is not valid JSON: {safe_text(str(exc), 200)}"


def _check_shape(raw: bytes | bytearray | str, obj: Any, what: str, max_depth: int) -> None:
    """Depth and NUL checks; walks the parsed value only when a cheap scan of the raw text says it
    could fail (fewer brackets than the limit cannot nest deeper; no ``\\u0000`` escape, no NUL)."""
    if isinstance(raw, str):
        brackets, nul = raw.count("[") + raw.count("{"), "\\u0000" in raw
    else:
        brackets, nul = raw.count(b"[") + raw.count(b"{"), b"\\u0000" in raw
    if brackets <= max_depth and not nul:
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise SchemaError(f"{what} contains a NUL character (\\u0000) in a text value")
        elif isinstance(value, (list, dict)):
            if depth > max_depth:
                raise SchemaError(f"{what} nests deeper than {max_depth} levels")
            if isinstance(value, dict):
                for k, v in value.items():
                    if "\x00" in k:
                        raise SchemaError(f"{what} contains a NUL character (\\u0000) in a field name")
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in value)


def decode_object(raw: bytes | bytearray | memoryview | str | None, what: str,
                  max_bytes: int = MAX_RECORD_BYTES) -> dict:
    """Like :func:`decode_json`, and the record must be a JSON object."""
    obj = decode_json(raw, what, max_bytes)
    if not isinstance(obj, dict):
        raise SchemaError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def safe_text(text: Any, limit: int = 4000) -> str:
    """Text that PostgreSQL, a log line and a terminal can hold: NUL and lone surrogates escaped,
    at most ``limit`` characters. For reasons and keys, never for the record itself."""
    s = text if isinstance(text, str) else str(text)
    s = s[:limit].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return s[:limit]


def preview(raw: bytes | bytearray | str | None, limit: int = 2000) -> str:
    """A readable, storable excerpt of a record's bytes (invalid UTF-8 shown as ``\\xNN``)."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return safe_text(raw, limit)
    return safe_text(bytes(raw[:limit]).decode("utf-8", "backslashreplace"), limit * 4)


def key_text(key: bytes | None, limit: int = 512) -> str | None:
    """A record key as storable text (``None`` stays ``None``)."""
    return None if key is None else preview(key, limit)
