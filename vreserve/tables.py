"""One table formatter for every table the CLI prints (rich, without colour or borders).

Numeric columns are right-aligned; callers format numbers with thousands separators and give each
numeric column its unit (in the header or in the cell), money with its currency. Cell text is
never read as rich markup: a site id such as ``[x]`` prints as it is.
"""
from __future__ import annotations

from typing import Sequence

#: Wide enough that no table is wrapped or cut: a terminal wraps long lines itself.
_WIDTH = 1000


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool] | None = None,
          title: str | None = None) -> str:
    """The rows under their headers as text; ``right`` per column (default: right when every cell
    in the column is a number, a percentage, empty or '-')."""
    # lazy: rich costs ~0.1 s to import, and every stage's CLI module imports this one at start-up
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    if right is None:
        right = [bool(cells) and all(_numeric(r[i]) for r in cells) for i in range(len(headers))]
    # header, a dashed rule (ASCII: any terminal encoding), rows; no borders
    rule_under_head = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
    grid = Table(box=rule_under_head, show_edge=False, pad_edge=False, header_style="", collapse_padding=True)
    for header, is_right in zip(headers, right):
        grid.add_column(Text(header), justify="right" if is_right else "left", no_wrap=True)
    for row in cells:
        grid.add_row(*(Text(c) for c in row))
    console = Console(width=_WIDTH, no_color=True, highlight=False, emoji=False, color_system=None)
    with console.capture() as captured:
        console.print(grid)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    return "\n".join(([title] if title else []) + lines).strip("\n")


def seconds(value: float) -> str:
    """A duration for a table cell: ``12.34 s``."""
    return f"{value:,.2f} s"


def quantity(value: float) -> str:
    """A quantity for a table cell: thousands separators, at most 3 decimals, no trailing zeros
    (``1,250``, ``12.5``); the unit goes in its own column or the header."""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _numeric(s: str) -> bool:
    try:
        float(s.replace("%", "").replace(",", "").split(" ")[0])
        return True
    except ValueError:
        return s in ("", "-")
