"""Hypothesis strategies for poison records, shared by the per-consumer fuzz tests.

Every strategy here produces records that are bad BY CONSTRUCTION for the consumer whose good
record (``template``) it starts from: random bytes, nesting deeper than any record of ours, a
record over the consumer's size limit, a NUL in a text field, invalid UTF-8 inside a text field, a
field of the wrong type, valid JSON of the wrong shape (another value, a required field missing,
an unknown field). The fuzz tests interleave them with good records built by the test itself.

``VRESERVE_FUZZ_RECORDS`` (not a ``VR_`` name: those are the services' settings) sets how many
records each consumer's test sends in all (default 200; bad and good together).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings as hsettings
from hypothesis import strategies as st

KINDS = ("bytes", "deep", "huge", "nul", "bad_utf8", "wrong_type", "wrong_shape", "missing", "unknown_field")
#: Records per consumer per run (bad + good); a longer run: VRESERVE_FUZZ_RECORDS=3000.
RECORDS = int(os.environ.get("VRESERVE_FUZZ_RECORDS", "200"))
#: Records per round (one publish-and-check round against the running service).
PER_EXAMPLE = 50
GOOD = "good"


@dataclass(frozen=True)
class Template:
    """A good record of one consumer and what the generator may break in it."""

    record: dict
    text_fields: tuple[str, ...]   # top-level fields holding non-empty strings
    required: tuple[str, ...]      # top-level fields whose absence makes the record bad
    max_bytes: int                 # the consumer's size limit
    #: the contract ignores (and keeps) unknown fields (MQTT stock reports and the readings records
    #: built from them, docs/ingest.md): a record with one is good, so none is generated as bad
    unknown_fields_ignored: bool = False
    #: an empty payload is a documented no-op (MQTT: clearing a retained report), not a bad record
    empty_is_clear: bool = False


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _kind_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


_json_scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
_json_values = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def bad_record(draw, t: Template) -> tuple[str, bytes]:
    """(kind, bytes) of one record that ``t``'s consumer must reject."""
    kind = draw(st.sampled_from([k for k in KINDS if k != "unknown_field" or not t.unknown_fields_ignored]))
    rec = dict(t.record)
    if kind == "bytes":
        raw = draw(st.binary(min_size=1 if t.empty_is_clear else 0, max_size=300))
        return kind, raw
    if kind == "deep":
        depth = draw(st.integers(40, 6000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        deep = opener * depth + "1" + closer * depth
        if draw(st.booleans()):
            return kind, deep.encode()
        field = draw(st.sampled_from(sorted(rec)))
        return kind, _dumps({**rec, field: "\u2603DEEP"}).replace(b'"\\u2603DEEP"', deep.encode(), 1)
    if kind == "huge":
        size = draw(st.integers(t.max_bytes + 1, t.max_bytes + 50_000))
        return kind, _dumps({**rec, "pad": "x" * size})
    if kind == "nul":
        field = draw(st.sampled_from(t.text_fields))
        at = draw(st.integers(0, len(rec[field])))
        rec[field] = rec[field][:at] + "\x00" + rec[field][at:]
        return kind, _dumps(rec)
    if kind == "bad_utf8":
        field = draw(st.sampled_from(t.text_fields))
        junk = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        marker = "\u2603MARK\u2603"
        rec[field] = rec[field] + marker
        return kind, _dumps(rec).replace(json.dumps(marker)[1:-1].encode(), junk, 1)
    if kind == "wrong_type":
        field = draw(st.sampled_from(t.required))
        original = _kind_of(rec[field])
        value = draw(_json_values.filter(lambda v: v is not None and _kind_of(v) != original))
        rec[field] = value
        return kind, _dumps(rec)
    if kind == "wrong_shape":
        value = draw(_json_values.filter(lambda v: not isinstance(v, dict) or not set(t.required) <= set(v)))
        return kind, _dumps(value)
    if kind == "missing":
        field = draw(st.sampled_from(t.required))
        rec.pop(field)
        return kind, _dumps(rec)
    # unknown_field
    name = draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in rec))
    rec[name] = draw(_json_values)
    return kind, _dumps(rec)


def records_for(t: Template, n: int | None = None) -> list[tuple[str, bytes]]:
    """``n`` records (default :data:`RECORDS`): bad ones drawn by hypothesis, a GOOD marker (where
    the test puts its next good record) after every third. Hypothesis explores the strategy over ``n``
    examples (deterministically: derandomized), which gives far more variety than one big list."""
    n = n or RECORDS
    bad: list[tuple[str, bytes]] = []

    @hsettings(max_examples=n - n // 4, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck))
    @given(bad_record(t))
    def collect(record):
        bad.append(record)
    collect()
    out: list[tuple[str, bytes]] = []
    for i, record in enumerate(bad):  # a good record after every third bad one
        out.append(record)
        if i % 3 == 2:
            out.append((GOOD, b""))
    return out[:n]


def rounds(records: list, size: int = PER_EXAMPLE) -> list[list]:
    """The records in rounds of ``size``: one publish-and-check round against the service each."""
    return [records[i:i + size] for i in range(0, len(records), size)]
