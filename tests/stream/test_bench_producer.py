"""The stream bench's producer (bench/stream_producer.py) puts each site's records on the partition
the bridge's producer would (Kafka's default partitioner, murmur2 of the key): otherwise the worker
would see a site on another partition than in production."""
from __future__ import annotations

import random

from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from bench.stream_producer import partition_of


def test_partition_of_a_key_is_kafka_python_default_partitioners():
    rng = random.Random(17)
    keys = [rng.randbytes(rng.randint(1, 40)) for _ in range(2000)] + [b"bs12ab-s%05d" % i for i in range(2000)]
    for partitions in (1, 4, 24):
        assert [partition_of(k, partitions) for k in keys] == \
            [(kafka_python_murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]
