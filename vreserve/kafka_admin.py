"""Create the project's Kafka topics up front, with the partition count from settings.

Topics are never left to auto-creation: every stage agrees on partitions, so keyed records (a
site's readings, a region's mode events) keep their order and Faust's co-partitioning holds.
"""
from __future__ import annotations

import time
from typing import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from vreserve import topics as topic_names
from vreserve.settings import Settings


#: How long to wait for created topics to show in the broker's metadata, s.
VISIBLE_TIMEOUT_S = 60.0


def ensure_topics(settings: Settings, names: Iterable[str] = topic_names.ALL) -> list[str]:
    """Create missing topics (logical names); returns the full names created now."""
    return ensure_named_topics(settings, [(settings.topic(n), settings.partitions, {}) for n in names])


def ensure_named_topics(settings: Settings, specs: list[tuple[str, int, dict[str, str]]]) -> list[str]:
    """Create missing topics given as (full name, partitions, topic configs), then wait until every
    one of them is in the broker's metadata with a leader for each partition.

    Why the wait: a freshly started broker answers metadata requests from a cache that can lag
    the controller by seconds; a consumer group that joins in that window gets topics "not found
    in cluster metadata", Faust's assignor ignores them, and the worker then sits with no
    partitions (seen: a demo whose stream worker never consumed a record)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [(name, parts, cfg) for name, parts, cfg in specs if name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=1,
                                              topic_configs=dict(cfg)) for name, parts, cfg in missing])
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        wait_until_visible(admin, {name: parts for name, parts, _ in specs})
        return [name for name, _, _ in missing]
    finally:
        admin.close()


def wait_until_visible(admin: KafkaAdminClient, partitions: dict[str, int],
                       timeout_s: float = VISIBLE_TIMEOUT_S) -> None:
    """Until each topic's metadata lists at least its partition count, each with a leader; a
    RuntimeError naming the topics still missing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pending = dict(partitions)
    while True:
        for topic in admin.describe_topics(list(pending)):
            parts = topic.get("partitions") or []
            name = topic.get("name") or topic.get("topic")
            if topic.get("error_code", 0) == 0 and len(parts) >= pending.get(name, 1) \
                    and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts):
                pending.pop(name, None)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not in the broker's metadata after {timeout_s:.0f} s: {', '.join(sorted(pending))}")
        time.sleep(0.2)
