"""The Faust application of the stream worker, built from settings (no module-level globals, so
tests and benchmarks can run workers with private topic prefixes side by side)."""
from __future__ import annotations

from pathlib import Path

import faust

from vreserve import kafka_clients
from vreserve.kafka_access import STREAM
from vreserve.settings import Settings

from stream.options import StreamOptions


def app_id(settings: Settings) -> str:
    """The worker's consumer group: ``<topic prefix>stream``."""
    return settings.group("stream")


def create_app(settings: Settings, options: StreamOptions) -> faust.App:
    datadir: Path = options.datadir or settings.state_dir / "stream" / app_id(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id(settings),
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka_clients.faust_credentials(settings, STREAM),
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,          # Faust declares its leader topic when it is asked for
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=options.web_port or settings.stream_web_port,
        web_in_thread=False,
        broker_commit_interval=1.0,
        # A crashed worker's partitions go to its replacement after this long (Kafka's default
        # is longer; a restart after SIGKILL would otherwise wait for the old member to expire).
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=max(1.0, options.session_timeout_s / 4),
        stream_buffer_maxsize=max(4096, options.batch_max * 2),
        producer_linger_ms=5,
        logging_config=None,
        # No leader-election topic unless asked for (see StreamOptions.leader_topic).
        topic_disable_leader=not options.leader_topic,
    )
