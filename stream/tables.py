"""Faust tables of the stream worker, and how the agent writes them.

``latest``: key = site id (the readings topic's key), value = ``{material_id: held state}`` with
the held state of :mod:`stream.state`; so the state of (site, material) is
``latest[site][material]``. Its changelog topic (``<app id>-latest-changelog``, same partition
count as the readings topic) is how a restarted worker gets its state back; a site's entry is
written to the changelog partition of the readings record it came from, so the table stays
co-partitioned with its source.

Why one entry per site rather than one per (site, material), and why :class:`LatestWriter`
instead of ``table[key] = value``: each changelog record costs Faust + aiokafka a fixed amount of
Python work, and that overhead set the worker's ceiling (measured: ~1,000 readings/s with Faust's
per-assignment path and one entry per (site, material); see docs/stream.md). A site's readings
arrive together in one record, so one changelog record per site per batch carries the same
information with 10-20 times fewer records. The writer updates the in-memory store directly,
coalesces a batch's changes (serialized when the batch is closed) and hands them to the producer
before the batch is written; Faust flushes the
producer before it commits offsets, and the batch's offsets are acknowledged only after the
database write, so the changelog never lags the committed offsets. Recovery is Faust's own: it
reads the changelog with the table's serializers.
"""
from __future__ import annotations

import json

import faust

from vreserve.settings import Settings

SERIALIZER = "json"


def latest_table(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "latest",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer=SERIALIZER, value_serializer=SERIALIZER),
        help="Per site: material -> latest (qty, unit, ts, seq) and the reading before it.",
    )


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class LatestWriter:
    """Read and write the ``latest`` table in batches (see the module docstring for why)."""

    def __init__(self, app: faust.App, table: faust.Table) -> None:
        self._app = app
        self._table = table
        self._dirty: dict[str, int] = {}  # site -> partition, changed in this batch

    def get(self, site_id: str, material_id: str) -> dict | None:
        materials = self._table.data.get(site_id)
        return materials.get(material_id) if materials else None

    def put(self, site_id: str, material_id: str, state: dict, partition: int) -> None:
        store = self._table.data
        materials = store.get(site_id)
        if materials is None:
            materials = {}
            store[site_id] = materials
            key_partition = getattr(store, "_key_partition", None)
            if key_partition is not None:  # the memory store drops keys of revoked partitions by this
                key_partition[site_id] = partition
        materials[material_id] = state
        self._dirty[site_id] = partition

    def take(self) -> list[tuple[int, bytes, bytes]]:
        """The changelog records of the sites changed since the last take, serialized now (so
        later changes do not leak into them): (partition, key, value)."""
        store = self._table.data
        dirty, self._dirty = self._dirty, {}
        # Plain JSON bytes, as Faust's "json" codec writes them (it reads them back on recovery),
        # without its per-call codec layers.
        return [(p, _dumps(site), _dumps(store[site])) for site, p in dirty.items()]

    async def send(self, records: list[tuple[int, bytes, bytes]]) -> None:
        """Hand changelog records to the producer (Faust's commit awaits their delivery)."""
        if not records:
            return
        topic = self._table.changelog_topic.get_topic_name()
        producer = self._app.producer
        for partition, key, value in records:
            await producer.send(topic, key, value, partition, None, None)

    def sites(self) -> int:
        return len(self._table.data)

    def keys(self) -> int:
        """(site, material) pairs held."""
        return sum(len(v) for v in self._table.data.values())
