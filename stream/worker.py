"""Run the stream worker in this process (used by ``vreserve stream run``)."""
from __future__ import annotations

import logging

import faust

from vreserve import topics
from vreserve.kafka_access import STREAM
from vreserve.kafka_admin import ensure_topics
from vreserve.settings import Settings

from stream.agents import declare
from stream.app import create_app
from stream.options import StreamOptions


#: The topics the worker reads and writes (the only ones its principal may create if missing).
STREAM_TOPICS = (topics.READINGS, topics.ALERTS, topics.STREAM_DEAD_LETTER)


def run_worker(settings: Settings, options: StreamOptions, loglevel: str = "warning") -> None:
    """Start a Faust worker until SIGINT/SIGTERM. Topics are created up front (auto-create is off)
    and waited for until the broker's metadata has them, before the group is joined."""

    ensure_topics(settings, STREAM_TOPICS, principal=STREAM)
    app = create_app(settings, options)
    declare(app, settings, options)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=False)
    logging.getLogger(__name__).info("stream worker %s starting", app.conf.id)
    worker.execute_from_commandline()
