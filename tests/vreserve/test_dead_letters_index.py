"""The API's in-memory index of refusals (vreserve/dead_letters.py: RefusalIndex): what it keeps
under its two bounds, checked against a plain model of the rule, and that its memory stays bounded."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from vreserve.dead_letters import Refusal, RefusalIndex

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _refusal(i: int, kind: str = "schema") -> Refusal:
    return Refusal(T0 + timedelta(seconds=i), kind, f"refusal {i}", "{}")


def _model(adds: list[tuple[str, Refusal]], per_site: int, in_all: int) -> list[tuple[str, Refusal]]:
    """The rule, written plainly: each add keeps the site's newest ``per_site``, then the newest
    ``in_all`` overall (the oldest to arrive go first)."""
    live: list[tuple[str, Refusal]] = []
    for site, refusal in adds:
        live.append((site, refusal))
        mine = [x for x in live if x[0] == site]
        if len(mine) > per_site:
            live.remove(mine[0])
        while len(live) > in_all:
            live.pop(0)
    return live


def test_the_index_keeps_what_the_rule_says_and_answers_pages_newest_last() -> None:
    rng = random.Random(5)
    for per_site, in_all in ((3, 10), (5, 7), (50, 1000)):
        index, adds = RefusalIndex(per_site, in_all), []
        for i in range(400):
            site = f"s{min(rng.randrange(12), rng.randrange(12))}"   # a few sites refuse far more often
            adds.append((site, _refusal(i, rng.choice(("schema", "json")))))
            index.add(*adds[-1])
        live = _model(adds, per_site, in_all)
        assert index.size == len(live) and index.sites == len({s for s, _ in live})
        for site in {s for s, _ in adds}:
            want = [r for s, r in live if s == site]
            got = index.query(site, None, 1000, 0, None)
            assert got.items == want
            whole = len(want) == sum(s == site for s, _ in adds)
            assert whole or not got.complete                  # never says whole when it is not
            if index.dropped_in_all == 0:
                assert got.complete == whole
            schema = [r for r in want if r.kind == "schema"]
            assert index.query(site, None, 2, 1, "schema").items == schema[max(0, len(schema) - 3):len(schema) - 1]
            if want:
                since = want[len(want) // 2].at
                assert index.query(site, since, 1000, 0, None).items == [r for r in want if r.at > since]


def test_complete_until_a_cap_drops_something() -> None:
    index = RefusalIndex(per_site=2, in_all=4)
    index.add("a", _refusal(0))
    index.add("a", _refusal(1))
    index.add("b", _refusal(2))
    assert index.query("a", None, 10, 0, None).complete and index.query("b", None, 10, 0, None).complete
    index.add("a", _refusal(3))                        # a's own cap drops refusal 0
    assert not index.query("a", None, 10, 0, None).complete and index.query("b", None, 10, 0, None).complete
    for i in range(4, 7):
        index.add("c", _refusal(i))                    # the overall cap drops: nobody's list is known whole
    assert not index.query("b", None, 10, 0, None).complete and index.dropped_in_all > 0


def test_one_site_flooding_the_topic_keeps_memory_bounded() -> None:
    index = RefusalIndex(per_site=10, in_all=100)
    for i in range(50_000):
        index.add("flood", _refusal(i))
    assert index.size == 10 and len(index._arrivals) <= 200 and len(index._stale) <= 1
    assert [r.reason for r in index.query("flood", None, 3, 0, None).items] == [
        "refusal 49997", "refusal 49998", "refusal 49999"]
    for i in range(1000):
        index.add(f"ghost-{i}", _refusal(i))           # endless unknown site ids
    assert index.size == 100 and index.sites == 100 and len(index._arrivals) <= 200
    assert len(index._capped) <= index.sites


def test_a_long_reason_is_cut_so_the_counts_bound_the_memory() -> None:
    from vreserve.dead_letters import MAX_REASON_CHARS, _bounded

    long = Refusal(T0, "k" * 80, "x" * 10_000, "{}")
    cut = _bounded(long)
    assert len(cut.reason) <= MAX_REASON_CHARS + 10 and cut.reason.endswith("...(cut)") and len(cut.kind) == 50
    short = _refusal(1)
    assert _bounded(short) is short
