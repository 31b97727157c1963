"""Cost of TLS + SASL (SCRAM-SHA-512) on the Kafka path: the same records through a SASL_SSL and a
PLAINTEXT broker, one run.

Two throw-away single-node brokers from the local runner (temporary state folders, free ports, the
jars of the configured state folder), one producer (acks=all, idempotent, as the stages send) and
one consumer built by ``vreserve.kafka_clients`` for each: ``python -m bench.kafka_tls [records]
[rounds]``. The two alternate, so machine noise hits both; read the ratio of the medians.
"""
from __future__ import annotations

import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kafka import TopicPartition

from bench.procs import free_port
from deploy.runner import Kafka
from vreserve import kafka_clients
from vreserve.kafka_access import BRIDGE, STREAM
from vreserve.kafka_admin import ensure_topics
from vreserve import topics
from vreserve.settings import Settings

#: a reading batch of the size the bridge writes (bytes)
RECORD_BYTES = 272


def _broker(base: Settings, secured: bool) -> tuple[Settings, Kafka]:
    """A private broker; its jars linked from the configured state folder (fetched there once)."""
    state = Path(tempfile.mkdtemp(prefix=f"vr-bench-kafka-{'tls' if secured else 'plain'}-"))
    port = free_port()
    while not _free(port + 1):
        port = free_port()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", state_dir=state, kafka_heap="512m",
                        kafka_security="SASL_SSL" if secured else "PLAINTEXT", topic_prefix="bench.")
    shared = Kafka(base)
    shared.fetch_libs(lambda m: print(m, file=sys.stderr))
    (state / "kafka").mkdir(parents=True)
    (state / "kafka" / "libs").symlink_to(shared.libs)
    shutil.copy(shared.libs.parent / "libs.stamp", state / "kafka" / "libs.stamp")
    broker = Kafka(settings)
    broker.up(progress=lambda _m: None)
    ensure_topics(settings, [topics.READINGS])
    return settings, broker


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _one_round(settings: Settings, records: int) -> tuple[float, float]:
    """(records/s produced with acks=all, records/s consumed) for ``records`` records."""
    topic = settings.topic(topics.READINGS)
    value = b"x" * RECORD_BYTES
    producer = kafka_clients.producer(settings, BRIDGE, enable_idempotence=True, linger_ms=5)
    consumer = kafka_clients.consumer(settings, STREAM, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        start = {tp: consumer.position(tp) for tp in parts}
        t0 = time.perf_counter()
        for i in range(records):
            producer.send(topic, key=f"site-{i % 500}".encode(), value=value)
        producer.flush(120)
        produced = records / (time.perf_counter() - t0)
        for tp in parts:
            consumer.seek(tp, start[tp])
        t1, got = time.perf_counter(), 0
        deadline = t1 + 120
        while got < records and time.perf_counter() < deadline:
            got += sum(len(v) for v in consumer.poll(timeout_ms=500, max_records=5000).values())
        if got < records:
            raise RuntimeError(f"consumed {got} of {records} records within 120 s")
        return produced, records / (time.perf_counter() - t1)
    finally:
        producer.close(5)
        consumer.close()


def main(records: int = 50_000, rounds: int = 3) -> dict[str, float]:
    base = Settings.from_env()
    brokers = []
    try:
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "tls": []}
        for secured in (False, True):
            brokers.append(_broker(base, secured))
        for r in range(rounds):
            for (settings, _kafka), name in zip(brokers, ("plain", "tls")):
                produced, consumed = _one_round(settings, records)
                runs[name].append((produced, consumed))
                print(f"round {r + 1} {name:<5}: produce {produced:,.0f} records/s, consume {consumed:,.0f} records/s")
        out = {}
        for name in ("plain", "tls"):
            out[f"{name}_produce"] = statistics.median(p for p, _ in runs[name])
            out[f"{name}_consume"] = statistics.median(c for _, c in runs[name])
        print(f"medians of {rounds}, {records:,} records of {RECORD_BYTES} bytes: "
              f"produce TLS+SASL / plain = {out['tls_produce'] / out['plain_produce']:.2f}, "
              f"consume TLS+SASL / plain = {out['tls_consume'] / out['plain_consume']:.2f}")
        return out
    finally:
        for settings, broker in brokers:
            broker.down(progress=lambda _m: None)
            shutil.rmtree(settings.state_dir, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
