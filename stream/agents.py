"""The worker's timers and health page: thin Faust declarations over a
:class:`stream.service.WarehouseWorker`, which consumes the readings topic (in batches, below
Faust's per-event agent path: see that module), holds the state and does the work.

(Declared by :func:`declare` rather than at module level: the app and its topic names come from
the settings, so tests and benchmarks run workers with private topic prefixes side by side.)
"""
from __future__ import annotations

import faust

from vreserve.settings import Settings

from stream.options import StreamOptions
from stream.service import WarehouseWorker
from stream.stats import WorkerStats, failing_parts

__all__ = ["WorkerStats", "declare", "failing_parts"]


def declare(app: faust.App, settings: Settings, options: StreamOptions) -> WarehouseWorker:
    """The worker service, started with the app, and its timers / page on ``app``."""
    worker = app.add_dependency(WarehouseWorker(app, settings, options))

    @app.timer(options.aggregate_interval_s, name="stream.checks")
    async def checks():
        await worker.run_checks()

    @app.timer(options.outbox_interval_s, name="stream.outbox")
    async def outbox():
        await worker.publish_outbox()

    @app.page("/health")
    async def health(web, request):
        return web.json(worker.health())

    return worker
