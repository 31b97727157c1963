"""Unit conversion between demand files and the material catalogue."""
from __future__ import annotations

import pytest

from vreserve.units import conversion_factor, measure


@pytest.mark.parametrize("from_unit, to_unit, factor", [
    ("bottles (500 ml)", "litre", 0.5),
    ("Bottles (1.5 L)", "ml", 1500.0),
    ("boxes", "box", 1.0),
    ("pieces", "unit", 1.0),
    ("kg", "kg", 1.0),
    ("tonnes", "kg", 1000.0),
    ("sacks (25 kg)", "t", 0.025),
])
def test_known_pairs_convert(from_unit: str, to_unit: str, factor: float) -> None:
    assert conversion_factor(from_unit, to_unit) == pytest.approx(factor)


@pytest.mark.parametrize("from_unit, to_unit", [
    ("bottles (500 ml)", "bottle"),  # a bottle of unknown size
    ("box", "unit"),                 # a box is not one item
    ("litre", "kg"),                 # volume vs mass
    ("boxes", "bottles"),
])
def test_unknown_or_different_measures_give_none(from_unit: str, to_unit: str) -> None:
    assert conversion_factor(from_unit, to_unit) is None


def test_measure_names_the_dimension() -> None:
    assert measure("bottles (500 ml)") == ("volume", 0.5)
    assert measure("Boxes") == ("count:box", 1.0)
