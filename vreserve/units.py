"""Conversion between the unit names of demand files and of the material catalogue.

Why: a demand file written from a report may count medical alcohol in "bottles (500 ml)" while the
sites report litres. Reading one as the other silently halves or doubles a shortage, so quantities
are converted where the factor is known, and a pair with no known factor is said out loud by the
caller (never guessed).

Units understood: volumes (ml, l, litre, liter), masses (g, kg, t, tonne), counted things (box,
piece, unit, bottle, ...; plural or singular; "piece"/"pcs"/"item"/"each" count as "unit"), and a
counted container with its content in brackets, e.g. "bottles (500 ml)" = 0.5 litre each.
"""
from __future__ import annotations

import re

_VOLUME = {"ml": 0.001, "millilitre": 0.001, "milliliter": 0.001, "cl": 0.01, "l": 1.0, "litre": 1.0,
           "liter": 1.0, "m3": 1000.0}
_MASS = {"mg": 1e-6, "g": 0.001, "gram": 0.001, "kg": 1.0, "kilogram": 1.0, "t": 1000.0, "tonne": 1000.0,
         "ton": 1000.0}
_COUNT_SYNONYMS = {"piece": "unit", "pc": "unit", "pcs": "unit", "item": "unit", "each": "unit", "unit": "unit"}
_CONTAINER = re.compile(r"^(?P<name>[a-z][a-z ]*?)\s*\(\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[a-z0-9]+)\s*\)$")


def _singular(word: str) -> str:
    if word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        return word[:-1]
    return word


def _physical(word: str) -> tuple[str, float] | None:
    for dimension, table in (("volume", _VOLUME), ("mass", _MASS)):
        for w in (word, _singular(word)):
            if w in table:
                return dimension, table[w]
    return None


def measure(unit: str) -> tuple[str, float]:
    """(dimension, size in that dimension's base unit): "litre" -> ("volume", 1.0), "bottles (500 ml)"
    -> ("volume", 0.5), "boxes" -> ("count:box", 1.0)."""
    text = " ".join(unit.strip().lower().split())
    physical = _physical(text)
    if physical is not None:
        return physical
    container = _CONTAINER.match(text)
    if container is not None:
        content = _physical(container["unit"])
        if content is not None:
            return content[0], float(container["amount"]) * content[1]
    word = _singular(text)
    return f"count:{_COUNT_SYNONYMS.get(word, word)}", 1.0


def conversion_factor(from_unit: str, to_unit: str) -> float | None:
    """How many ``to_unit`` one ``from_unit`` is (e.g. "bottles (500 ml)" -> "litre": 0.5); None when
    the two measure different things or the factor is unknown."""
    dim_a, size_a = measure(from_unit)
    dim_b, size_b = measure(to_unit)
    if dim_a != dim_b:
        return None
    return size_a / size_b
