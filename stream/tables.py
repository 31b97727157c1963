"""Faust tables of the stream worker.

``latest``: key ``"<site_id>\\x1f<material_id>"``, value the held state of :mod:`stream.state`.
Its changelog topic (``<app id>-latest-changelog``, same partition count as the readings topic)
is how a restarted worker gets its state back; each key is written to the changelog partition of
the readings record it came from, so the table stays co-partitioned with its source.
"""
from __future__ import annotations

import faust

from vreserve.settings import Settings


def latest_table(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "latest",
        default=None,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        help="Latest (qty, unit, ts, seq) per (site, material), with the reading before it.",
    )
