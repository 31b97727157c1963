"""Run the stream worker in this process (used by ``vreserve stream run``)."""
from __future__ import annotations

import logging

from vreserve import topics
from vreserve.kafka_access import STREAM
from vreserve.kafka_admin import ensure_named_topics, ensure_topics
from vreserve.settings import Settings

from stream.app import changelog_topic, create_app
from stream.agents import wire
from stream.options import StreamOptions


#: The topics the worker reads and writes (the only ones its principal may create if missing).
STREAM_TOPICS = (topics.READINGS, topics.ALERTS, topics.STREAM_DEAD_LETTER)


def run_worker(settings: Settings, options: StreamOptions, loglevel: str = "warning") -> None:
    """Start a Faust worker until SIGINT/SIGTERM. Topics are created up front (auto-create is off);
    Faust declares its changelog topic itself with the same partition count."""
    import faust

    ensure_topics(settings, STREAM_TOPICS, principal=STREAM)
    # Faust's own changelog topic, created here as Faust would (compacted, the table's partitions)
    # so that ensure_named_topics can wait for the broker to know it before the group is joined.
    ensure_named_topics(settings, [(changelog_topic(settings), settings.partitions, {"cleanup.policy": "compact"})],
                        principal=STREAM)
    app = create_app(settings, options)
    wire(app, settings, options)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=False)
    logging.getLogger(__name__).info("stream worker %s starting", app.conf.id)
    worker.execute_from_commandline()
