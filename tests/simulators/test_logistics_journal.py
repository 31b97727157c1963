"""The webhook carrier's journal (simulators/logistics_journal.py): what it folds to, a torn last
line, compaction that says the same, and one process at a time."""
from __future__ import annotations

import json

import pytest

from simulators.logistics_journal import JournalError, OrderJournal, compacted, fold


def _taken(key: str, oid: str) -> str:
    return json.dumps({"key": key, "order_id": oid, "record": {"order_id": oid, "qty": 1}})


def test_fold_keeps_every_key_and_only_orders_not_done_in_order():
    lines = [_taken("order:a", "a"), _taken("order:b", "b"), _taken("cancel:a", "a"), json.dumps({"done": "a"}),
             _taken("order:c", "c")]
    r = fold(lines)
    assert r.keys == {"order:a", "order:b", "cancel:a", "order:c"}
    assert [k for k, _ in r.pending] == ["order:b", "order:c"] and r.done == {"a"}
    assert not r.dropped_torn_line


def test_a_torn_last_line_is_dropped_a_damaged_middle_line_is_refused():
    torn = [_taken("order:a", "a"), _taken("order:b", "b")[:20]]
    r = fold(torn)
    assert r.dropped_torn_line and r.keys == {"order:a"}
    with pytest.raises(JournalError, match="line 1"):
        fold(["{not json", _taken("order:a", "a")])


def test_compaction_says_the_same_and_a_second_process_is_refused(tmp_path):
    path = tmp_path / "carrier" / "orders.jsonl"
    j = OrderJournal(path)
    assert j.open().keys == set()
    j.taken("order:a", {"order_id": "a"})
    j.taken("order:b", {"order_id": "b"})
    j.done("a")
    with pytest.raises(JournalError, match="in use"):
        OrderJournal(path).open()
    j.close()
    before = fold(path.read_text().splitlines())
    again = OrderJournal(path)
    after = again.open()
    assert (after.keys, after.pending) == (before.keys, before.pending)
    assert path.read_text().splitlines() == compacted(before)          # finished ones keep only their key
    assert path.stat().st_mode & 0o777 == 0o600
    again.close()
