"""The one table formatter: headers, a rule, right-aligned numbers, cell text printed as it is."""
from __future__ import annotations

from vreserve.tables import quantity, seconds, table


def test_numbers_right_aligned_text_left_and_markup_printed_as_is():
    out = table(["site", "qty, box"], [["[bold]s1", "1,234"], ["s22", "5"]], title="stock")
    lines = out.splitlines()
    assert lines[0] == "stock"
    assert lines[1].split() == ["site", "qty,", "box"] and set(lines[2]) == {"-"}
    assert lines[3].startswith("[bold]s1") and lines[3].endswith("1,234")
    assert lines[4].startswith("s22") and lines[4].endswith("    5")
    assert all(line == line.rstrip() for line in lines)


def test_empty_table_and_seconds():
    assert table(["a", "b"], []).splitlines()[0].split() == ["a", "b"]
    assert seconds(1234.5) == "1,234.50 s"


def test_quantity_has_thousands_separators_and_no_trailing_zeros():
    assert [quantity(x) for x in (1250.0, 12.5, 0.25, 1234567.8916, 100, -0.0001)] == \
        ["1,250", "12.5", "0.25", "1,234,567.892", "100", "0"]
