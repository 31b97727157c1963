"""The Faust application of the stream worker, built from settings (no module-level globals, so
tests and benchmarks can run workers with private topic prefixes side by side)."""
from __future__ import annotations

from pathlib import Path

import faust
from faust.app import BootStrategy

from vreserve import kafka_clients
from vreserve.kafka_access import STREAM
from vreserve.settings import Settings

from stream.options import StreamOptions


def app_id(settings: Settings) -> str:
    """The worker's consumer group (the app's id): ``<topic prefix>stream``."""
    return settings.group("stream")


class ServiceBoot(BootStrategy):
    """Faust's own consumer, its topic conductor and its tables are not started: the worker's
    service (:class:`stream.service.WarehouseWorker`) consumes the readings topic in batches
    itself, below Faust's per-event path (see that module). Faust's producer, web server,
    timers and service lifecycle run as usual (the switch is Faust's own: BootStrategy's
    ``enable_kafka_consumer``)."""

    enable_kafka_consumer = False


class StreamApp(faust.App):
    """The stream worker's Faust app: no Faust consumer (see :class:`ServiceBoot`)."""

    BootStrategy = ServiceBoot


def create_app(settings: Settings, options: StreamOptions) -> faust.App:
    datadir: Path = options.datadir or settings.state_dir / "stream" / app_id(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return StreamApp(
        app_id(settings),
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka_clients.faust_credentials(settings, STREAM),
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=options.web_port or settings.stream_web_port,
        web_in_thread=False,
        producer_linger_ms=5,
        logging_config=None,
        # Nothing runs "on the leader only", and there is no Faust consumer to elect one.
        topic_disable_leader=True,
    )
