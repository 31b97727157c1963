"""When a record means the consumer skipped some (pure logic of stream.repair)."""
from stream.repair import gap_start


def test_a_record_beyond_every_known_frontier_starts_a_gap_there():
    assert gap_start(10, None, None) is None      # nothing written yet: Faust's start stands
    assert gap_start(10, 10, None) is None        # the next record
    assert gap_start(7, 10, 12) is None           # a replay
    assert gap_start(15, 10, None) == 10          # this process folded up to 9
    assert gap_start(15, None, 12) == 12          # restarted: the database holds 12
    assert gap_start(15, 8, 15) is None           # another worker wrote up to 14 meanwhile
    assert gap_start(20, 12, 15) == 15
