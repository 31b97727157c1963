"""Tuning of the stream worker, frozen and passed down next to :class:`vreserve.settings.Settings`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StreamOptions:
    #: Readings records per sink batch, and the longest a batch waits to fill, in seconds. The
    #: batch is written to PostgreSQL before its Kafka offsets are acknowledged.
    batch_max: int = 2000
    batch_within_s: float = 0.2
    #: Database writers (lanes): a batch is split by readings partition (``partition % writers``)
    #: and the lanes write their shares in parallel, each on its own connection, one transaction at
    #: a time (see stream.service.Lane). With one, a single transaction carries the batch.
    writers: int = 2
    #: A site is stale when its newest reading is older than this many reading intervals.
    stale_intervals: float = 3.0
    #: Reconciliation of stock changes (vreserve.reconcile): a reading is judged once it is
    #: ``settle_s`` old (the picks it may show arrive through carrier and dispatcher); an
    #: unexplained remainder within max(1 unit, ``change_tolerance`` x the quantity) is noise.
    settle_s: float = 10.0
    change_tolerance: float = 0.1
    #: Seconds between recomputations of the aggregates and the stale / low-stock checks.
    aggregate_interval_s: float = 5.0
    #: Least seconds between two reconciliation passes (run with the checks); None: ``settle_s``.
    #: A pass costs the database one visit of every key that has new readings (its cursor moves),
    #: whatever the number of readings, and a reading waits ``settle_s`` before it is judged
    #: anyway: so a finding comes ``settle_s`` to about 2 x ``settle_s`` after its reading (before:
    #: ``settle_s`` to ``settle_s`` + the checks' interval), at half the passes with the defaults.
    reconcile_interval_s: float | None = None
    #: Seconds between refreshes of the hourly rollup (plain PostgreSQL only; see 0020).
    hourly_interval_s: float = 60.0
    #: Seconds between passes of the alert outbox (database -> alerts topic).
    outbox_interval_s: float = 1.0
    #: Kafka consumer session timeout, s: how long until a crashed worker's partitions move on.
    session_timeout_s: float = 10.0
    #: Faust web port (health endpoint); None = settings.stream_web_port.
    web_port: int | None = None
    #: Where Faust keeps its local state; None = <settings.state_dir>/stream/<app id>.
    datadir: Path | None = None

    def reconcile_every_s(self) -> float:
        """Least seconds between reconciliation passes (see ``reconcile_interval_s``)."""
        return self.settle_s if self.reconcile_interval_s is None else self.reconcile_interval_s
