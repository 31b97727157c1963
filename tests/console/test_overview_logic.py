"""Pure logic of the console's server side: coverage, lattice geometry, site counts, the live
cursor's de-duplication (no services needed; the ideal shortage: tests/vreserve/test_ideal_shortage.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from console.live import StockCursor, sse
from console.overview import CellBook, cell_coverages, lattice_bounds


def test_coverage_against_safety_level_else_contracted_and_mean_capped():
    rows = [("g1", "mask", 50.0, 100.0, 10.0, 0.0),      # (50 - 10) / contracted 100 = 0.4
            ("g1", "pork", 300.0, 100.0, 0.0, 150.0),     # 300 / safety 150 = 2.0, capped at 1 in the mean
            ("g2", "mask", 0.0, 0.0, 0.0, 0.0)]           # nothing to compare: None
    cov = cell_coverages(rows)
    assert cov["g1"]["materials"]["mask"]["coverage"] == 0.4
    assert cov["g1"]["materials"]["pork"]["coverage"] == 2.0
    assert cov["g1"]["materials"]["pork"]["reference"] == "safety"
    assert cov["g1"]["coverage"] == (0.4 + 1.0) / 2
    assert cov["g2"]["coverage"] is None


def test_lattice_cells_tile_the_region_and_other_names_keep_their_own_box():
    rows = [("w-r00c00", "w", 30.0, 114.0, 30.1, 114.1, 3, 0), ("w-r01c01", "w", 30.6, 114.6, 31.0, 115.0, 2, 0),
            ("x-north", "x", 10.0, 20.0, 10.5, 20.5, 1, 0)]
    b = lattice_bounds(rows)
    assert b["w-r00c00"] == [[30.0, 114.0], [30.5, 114.5]]
    assert b["w-r01c01"] == [[30.5, 114.5], [31.0, 115.0]]
    assert "x-north" not in b


def test_stock_cursor_announces_each_reading_once_across_overlapping_polls():
    t = datetime(2026, 11, 30, tzinfo=timezone.utc)
    row1 = ("s1", "mask", 5.0, "piece", t, 1, "g", t)
    row2 = ("s1", "mask", 4.0, "piece", t + timedelta(seconds=1), 2, "g", t + timedelta(seconds=1))
    cur = StockCursor()
    assert cur.fresh([row1]) == [row1]
    assert cur.fresh([row1, row2]) == [row2]   # the overlap window re-reads row1: not sent again
    assert cur.since == row2[7]
    assert sse("stock", {"a": 1}) == b'event: stock\ndata: {"a":1}\n\n'


def test_cell_book_moves_a_cell_by_each_reading_and_matches_a_full_recount():
    rows = [("s1", "g1", "mask", "piece", 10.0, 100.0, 0.0), ("s2", "g1", "mask", "piece", None, 100.0, 0.0),
            ("s3", "g2", "mask", "piece", 50.0, 50.0, 0.0)]
    book = CellBook(rows, [("s2", "mask", 5.0)])
    assert book.apply("s2", "mask", 30.0, "piece") == "g1"
    assert book.apply("s1", "mask", 4.0, "piece") == "g1"
    assert book.apply("s3", "mask", 7.0, "box") == "g2"          # another unit: not added (as the SQL does)
    assert book.apply("s9", "mask", 1.0, "piece") is None         # no contract: not on the map
    cov = book.coverages(["g1", "g2"])
    assert cov["g1"]["materials"]["mask"]["available"] == (4 + 30) - 5
    assert cov["g2"]["materials"]["mask"]["available"] == 0
    recount = CellBook([("s1", "g1", "mask", "piece", 4.0, 100.0, 0.0), ("s2", "g1", "mask", "piece", 30.0, 100.0, 0.0),
                        ("s3", "g2", "mask", "piece", None, 50.0, 0.0)], [("s2", "mask", 5.0)])
    assert recount.coverages(["g1", "g2"]) == cov
    book.set_reserved([])  # the order was delivered or cancelled
    assert book.coverages(["g1"])["g1"]["materials"]["mask"]["available"] == 34
