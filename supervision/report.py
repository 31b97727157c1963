"""Plain-text tables for the terminal: every numeric column header carries its unit."""
from __future__ import annotations

from typing import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool] | None = None) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if right is None:
        right = [all(_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]
    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()
    out = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in cells]
    return "\n".join(out)


def _numeric(s: str) -> bool:
    try:
        float(s.replace("%", "").replace(",", ""))
        return True
    except ValueError:
        return s in ("", "-")
