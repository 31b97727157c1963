"""How the worker splits a batch among its database writers (stream.service.Lane): by readings
partition, so two lanes never write the same site's rows and each partition's batches stay in
offset order on one lane."""
from __future__ import annotations

from datetime import datetime, timezone

from stream.records import Item, ReadingRecord
from stream.repair import Source
from stream.service import Batch, WarehouseWorker
from stream.sink import NewSites
from vreserve.schemas.alerts import Alert


def _record(site: str) -> ReadingRecord:
    ts = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    return ReadingRecord(site, ts, "2026-12-01T12:00:00.000Z", 1, 0, "2026-12-01T12:00:00.000Z",
                         [Item("water", 1.0, "l")], plain=True)


def _batch(partitions: list[int]) -> tuple[Batch, list, NewSites]:
    """One record per entry of ``partitions`` (site s<offset> on that partition), an alert on the first."""
    batch, folded = Batch(), []
    alert = Alert(alert_id="device_restart:s0:water:1", kind="device_restart", severity="warning", site_id="s0",
                  material_id="water", message="restarted", at=datetime(2026, 12, 1, tzinfo=timezone.utc))
    for offset, p in enumerate(partitions):
        source, record = Source("readings", p, offset, f"s{offset}".encode(), b"{}"), _record(f"s{offset}")
        batch.parsed.append((source, record))
        batch.taken += 1
        batch.frontier[p] = offset + 1
        folded.append((source, record, (alert,) if offset == 0 else ()))
    return batch, folded, NewSites("readings", [(p, f"s{o}") for o, p in enumerate(partitions)])


def test_each_lane_gets_the_records_frontier_alerts_and_new_sites_of_its_partitions_only():
    batch, folded, new_sites = _batch([0, 1, 2, 3, 0, 2, 1])
    parts = [WarehouseWorker._lane_part(i, 2, batch, folded, new_sites) for i in range(2)]
    even, odd = parts
    assert [s.partition for s, _ in even[0].parsed] == [0, 2, 0, 2]
    assert [s.offset for s, _ in even[0].parsed] == [0, 2, 4, 5]  # offset order kept
    assert even[0].frontier == {0: 5, 2: 6} and odd[0].frontier == {1: 7, 3: 4}
    assert [f[0].offset for f in odd[1]] == [1, 3, 6]
    assert [len(f[2]) for f in even[1]] == [1, 0, 0, 0] and all(not f[2] for f in odd[1])
    assert even[2].sites == [(0, "s0"), (2, "s2"), (0, "s4"), (2, "s5")]
    assert odd[2].sites == [(1, "s1"), (3, "s3"), (1, "s6")]
    # every record, frontier entry and new site in exactly one lane
    assert sorted(s.offset for part in parts for s, _ in part[0].parsed) == list(range(7))
    assert {**even[0].frontier, **odd[0].frontier} == batch.frontier


def test_a_lane_without_partitions_in_the_batch_writes_nothing_and_one_lane_takes_all():
    batch, folded, new_sites = _batch([1, 3, 1])
    assert WarehouseWorker._lane_part(0, 2, batch, folded, new_sites) is None
    assert WarehouseWorker._lane_part(0, 1, batch, folded, new_sites) == (batch, folded, new_sites)


def test_a_partition_of_dead_lettered_records_only_still_moves_its_lanes_frontier():
    batch, folded, new_sites = _batch([0, 2])
    batch.frontier[1] = 10  # records of partition 1 were all dead-lettered: nothing to write but the frontier
    batch.taken += 3
    odd = WarehouseWorker._lane_part(1, 2, batch, folded, new_sites)
    assert odd is not None and odd[0].frontier == {1: 10} and odd[0].parsed == [] and odd[1] == []
