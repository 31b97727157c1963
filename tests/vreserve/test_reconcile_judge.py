"""vreserve.reconcile's pure judgement: what explains a change between two readings, and what is left."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from vreserve.reconcile import Movement, Policy, StockChange, alert_for, check_movement, judge

T0 = datetime(2026, 11, 30, 8, tzinfo=timezone.utc)


def change(prev: float, qty: float, picked: float = 0, received: float = 0, declared: float = 0,
           refs=()) -> StockChange:
    return StockChange("S1", "medicine", "g1", "box", 1, T0, prev, 2, T0 + timedelta(seconds=10), qty,
                       picked, received, declared, [{"kind": "pick", "ref": r, "qty": picked, "at": T0.isoformat()}
                                                    for r in refs])


def test_a_pick_explains_the_drop_the_old_jump_rule_flagged():
    j = judge(change(100, 30, picked=70, refs=["O-1"]))
    assert j.verdict == "explained" and j.expected == 30 and j.unexplained == 0
    assert alert_for(change(100, 30, picked=70), j) is None


def test_declared_movements_and_deliveries_explain_rises_and_drops():
    assert judge(change(100, 300, declared=200)).verdict == "explained"
    assert judge(change(100, 40, declared=-60)).verdict == "explained"
    assert judge(change(10, 60, received=50)).verdict == "explained"
    # slow consumption between readings is within the tolerance (10 % of the quantity, >= 1 unit)
    assert judge(change(100, 95)).verdict == "explained"
    assert judge(change(3, 2)).verdict == "explained"


def test_unexplained_remainders():
    drop = judge(change(100, 40))
    assert (drop.verdict, drop.expected, drop.unexplained, drop.tolerance) == ("unexplained_drop", 100, -60, 10)
    a = alert_for(change(100, 40), drop)
    assert a.kind == "unexplained_change" and a.severity == "critical" and a.alert_id == "unexplained_change:S1:medicine:2"
    assert "reading 40 box" in a.message and "expected 100 box" in a.message and "60 box unexplained" in a.message
    # a pick explains part of a drop; the rest is judged
    part = judge(change(100, 20, picked=30, refs=["O-2"]))
    assert part.verdict == "unexplained_drop" and part.expected == 70 and part.unexplained == -50
    assert "- 30 picked (O-2)" in alert_for(change(100, 20, picked=30, refs=["O-2"]), part).message
    rise = judge(change(100, 1000))
    assert rise.verdict == "unexplained_rise"
    assert alert_for(change(100, 1000), rise).severity == "critical"
    assert judge(change(100, 115)).verdict == "unexplained_rise"
    assert alert_for(change(100, 115), judge(change(100, 115))).severity == "warning"


def test_a_pick_answered_but_still_on_the_shelf_is_numbers_without_goods():
    j = judge(change(100, 100, picked=60, refs=["O-3"]))
    assert j.verdict == "pick_not_reflected" and j.unexplained == 60
    a = alert_for(change(100, 100, picked=60, refs=["O-3"]), j)
    assert a.kind == "pick_not_reflected" and a.severity == "critical"
    assert a.details["explained_by"][0]["ref"] == "O-3" and a.details["expected_qty"] == 40
    # half of a pick still showing is enough; a small pick reflected within a unit is not
    assert judge(change(100, 70, picked=60)).verdict == "pick_not_reflected"
    assert judge(change(100, 99, picked=1)).verdict == "explained"
    assert judge(change(100, 100, picked=1)).verdict == "pick_not_reflected"
    # a looser policy
    assert judge(change(100, 70, picked=60), Policy(pick_share=0.9)).verdict == "unexplained_rise"


def test_declared_movements_are_checked():
    ok = Movement("M1", "S1", "medicine", "replenishment", 5.0, "box", T0)
    check_movement(ok, T0, "box")
    bad = [
        (Movement("M1", "S1", "medicine", "theft", 5.0, "box", T0), "kind must be one of"),
        (Movement("M1", "S1", "medicine", "consumption", 0.0, "box", T0), "positive number"),
        (Movement("M1", "S1", "medicine", "consumption", float("nan"), "box", T0), "positive number"),
        (Movement("M1", "S1", "medicine", "consumption", 1.0, "kg", T0), "counted in 'box'"),
        (Movement("M1", "S1", "medicine", "consumption", 1.0, "box", T0 + timedelta(hours=1)), "future"),
        (Movement("", "S1", "medicine", "consumption", 1.0, "box", T0), "movement_id"),
    ]
    for m, message in bad:
        with pytest.raises(ValueError, match=message):
            check_movement(m, T0, "box")
    with pytest.raises(ValueError, match="unknown material"):
        check_movement(ok, T0, None)


def pair(prev: float, qty: float, i: int, picked: float = 0, newest=False, pending=False, age=5.0):
    from vreserve.reconcile import Pending

    c = StockChange("S1", "ventilator", "g1", "unit", i, T0 + timedelta(seconds=i), prev, i + 1,
                    T0 + timedelta(seconds=i + 1), qty, picked, 0, 0,
                    [{"kind": "pick", "ref": f"O-{i}", "qty": picked, "at": (T0 + timedelta(seconds=i + 1)).isoformat()}]
                    if picked else [])
    return c, Pending(newest, pending, age)


def test_a_pick_stamped_on_the_millisecond_of_the_reading_before_is_explained():
    """Seen in the demo: reading 8 (ts .737), pick of 2 answered at .737, next reading 6 (ts .738)."""
    from vreserve.reconcile import settle_pairs

    judged, held = settle_pairs([pair(8, 8, 1, picked=2), pair(8, 6, 2, newest=True)], Policy())
    assert [j.verdict for _c, j in judged] == ["explained", "explained"] and not held
    # a spike and its return cancel each other too, but no movement sits on the boundary: both judged
    judged, held = settle_pairs([pair(10, 100, 1), pair(100, 10, 2), pair(10, 10, 3, newest=True)], Policy())
    assert [j.verdict for _c, j in judged] == ["unexplained_rise", "unexplained_drop", "explained"]


def test_two_readings_on_one_millisecond_are_taken_in_seq_order():
    """A regular reading and the one right after a pick answered on the same millisecond: the pair
    that ends on the first (pick not yet shown) and the pair between the two (the drop) cancel."""
    from vreserve.reconcile import Pending, settle_pairs

    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    pick = [{"kind": "pick", "ref": "O-1", "qty": 60, "at": t2.isoformat()}]
    before = StockChange("S1", "ventilator", "g1", "unit", 1, t1, 100, 2, t2, 100, 60, 0, 0, pick)
    after = StockChange("S1", "ventilator", "g1", "unit", 2, t2, 100, 3, t2, 40)
    judged, held = settle_pairs([(after, Pending(True, False, 5.0)), (before, Pending(False, False, 5.0))], Policy())
    assert [(c.seq, j.verdict) for c, j in judged] == [(2, "explained"), (3, "explained")] and not held


def test_an_unexplained_change_waits_for_a_pending_pick_or_the_next_reading_then_is_judged():
    from vreserve.reconcile import settle_pairs

    # the newest settled reading with a pick on its millisecond: wait (the next reading may cancel
    # it); the cursor stays before it. Without such a pick: judged at once.
    judged, held = settle_pairs([pair(100, 100, 1), pair(100, 100, 2, picked=50, newest=True)], Policy())
    assert [j.verdict for _c, j in judged] == ["explained"] and held == {("S1", "ventilator"): (T0 + timedelta(seconds=2), 2)}
    judged, held = settle_pairs([pair(100, 100, 1), pair(100, 40, 2, newest=True)], Policy())
    assert [j.verdict for _c, j in judged] == ["explained", "unexplained_drop"] and not held
    # an order from the site is still open in the database: wait, and so do the key's later pairs
    judged, held = settle_pairs([pair(100, 40, 1, pending=True), pair(40, 40, 2)], Policy())
    assert judged == [] and held == {("S1", "ventilator"): (T0 + timedelta(seconds=1), 1)}
    # after the longest wait it is judged anyway; with a later reading that does not cancel it, at once
    judged, _ = settle_pairs([pair(100, 40, 1, pending=True, age=121)], Policy())
    assert [j.verdict for _c, j in judged] == ["unexplained_drop"]
    judged, held = settle_pairs([pair(100, 40, 1), pair(40, 40, 2, newest=True)], Policy())
    assert [j.verdict for _c, j in judged] == ["unexplained_drop", "explained"] and not held


def test_stock_above_the_sites_physical_capacity():
    over = StockChange("S1", "medicine", "g1", "box", 1, T0, 100, 2, T0 + timedelta(seconds=10), 105,
                       capacity=103.0)
    j = judge(over)
    assert j.verdict == "above_capacity"  # a 5 % rise is within noise, but not above capacity
    a = alert_for(over, j)
    assert a.kind == "above_capacity" and a.severity == "critical" and "capacity of 103 box" in a.message
    assert a.details["capacity_qty"] == 103.0
    within = StockChange("S1", "medicine", "g1", "box", 1, T0, 100, 2, T0 + timedelta(seconds=10), 104,
                         capacity=103.0)
    assert judge(within).verdict == "explained"  # one unit of tolerance
