"""Money is an integer number of the smallest currency unit ("minor units"), never a float."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def to_decimal(value: object) -> Decimal:
    """Exact decimal from what PostgreSQL, YAML or CSV hands us (floats go through repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def minor(amount: Decimal) -> int:
    """Round an exact amount to whole minor units, halves away from zero (documented rule)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fmt_qty(value: Decimal | float | int, places: int | None = None) -> str:
    """A quantity without trailing zeros: 12, 12.5, 0.25 (rounded to ``places`` decimals if given)."""
    d = to_decimal(value)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")
