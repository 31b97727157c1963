"""The anytime benchmark's bookkeeping (pure): gap over time from recorded incumbents and bounds."""
from bench.optimizer_anytime import first_plan, gap_at


def test_gap_at_uses_the_best_plan_and_bound_known_by_then():
    events = [{"t": 1.0, "objective": 200.0, "bound": 100.0},
              {"t": 4.0, "objective": None, "bound": 150.0},  # a better bound, no plan (HiGHS progress)
              {"t": 8.0, "objective": 160.0, "bound": 150.0}]
    assert gap_at(events, 0.5) is None  # no plan yet: no gap, not 0 %
    assert gap_at(events, 1.0) == 0.5
    assert gap_at(events, 5.0) == 0.25
    assert gap_at(events, 10.0) == (160.0 - 150.0) / 160.0
    assert first_plan(events) == 1.0 and first_plan([{"t": 3.0, "objective": None, "bound": 1.0}]) is None
