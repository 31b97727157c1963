"""Create the project's Kafka topics up front, with the partition count from settings.

Topics are never left to auto-creation: every stage agrees on partitions, so keyed records (a
site's readings, a region's mode events) keep their order and Faust's co-partitioning holds.
"""
from __future__ import annotations

from typing import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from vreserve import topics as topic_names
from vreserve.settings import Settings


def ensure_topics(settings: Settings, names: Iterable[str] = topic_names.ALL) -> list[str]:
    """Create missing topics (logical names); returns the full names created now."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        wanted = [settings.topic(n) for n in names]
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t, num_partitions=settings.partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        return missing
    finally:
        admin.close()
