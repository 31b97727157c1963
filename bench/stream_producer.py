"""A producer process of ``vreserve bench stream --source kafka``: offers its shard of the sites'
ReadingBatch records at a rate, byte for byte as the bridge writes them, each with the sensor and
received time of its send (the latency the bench reads starts there).

Why a process of its own with pre-built records: the bench's producer thread built every record
through the contract models and shared the bench's interpreter, and could not offer more than
about 16,000 readings/s; the worker's target is 50,000. Here each site's bytes are prepared once
(every part but the times and the seq), and several processes share the sites.

Run as ``python -m bench.stream_producer UNITS_JSON SHARD SHARDS RATE DURATION START_AT``; it
prints ``ready`` once connected, starts at the wall time START_AT, and prints one JSON line
``{"sent": n, "late_s": s}`` at the end.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import orjson
from aiokafka.partitioner import murmur2

from vreserve import kafka_clients, topics
from vreserve.kafka_access import BRIDGE
from vreserve.settings import Settings

#: quantities cycle over this many values per site, so consecutive readings differ a little
QTY_VARIANTS = 3


def site_templates(site_units: list[tuple[str, list[tuple[str, str]]]]) -> list[tuple[bytes, bytes, list[bytes], bytes]]:
    """Per site: (key, head, readings JSON per quantity variant, site tail) of its record."""
    out = []
    for site_id, mats in site_units:
        head = b'{"mqtt_topic":' + orjson.dumps(topics.mqtt_stock_topic(site_id)) + b',"readings":'
        readings = [orjson.dumps([{"material": m, "qty": 100.0 + k, "unit": u} for m, u in mats])
                    for k in range(QTY_VARIANTS)]
        out.append((site_id.encode(), head, readings, b',"site_id":' + orjson.dumps(site_id) + b',"ts":"'))
    return out


def record(template: tuple[bytes, bytes, list[bytes], bytes], seq: int, ts: bytes) -> bytes:
    """The record as :meth:`ReadingBatch.to_json` writes it (same key order), ts = received_at."""
    _, head, readings, site_tail = template
    return b"".join((head, readings[seq % QTY_VARIANTS], b',"received_at":"', ts, b'","seq":', b"%d" % seq,
                     site_tail, ts, b'","v":1}'))


def ts_bytes(now: float) -> bytes:
    """RFC 3339 UTC with milliseconds, the bridge's form."""
    dt = datetime.fromtimestamp(now, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%03dZ" % (dt.microsecond // 1000)


def offer(settings: Settings, templates: list, rate: float, duration: float, start_at: float) -> dict:
    """Send the shard's records round robin at ``rate`` records/s for ``duration`` s from ``start_at``.
    seq is the send time in ms (or one more than the site's last), so it rises across steps (each
    site is in one shard only)."""
    return asyncio.run(_offer(settings, templates, rate, duration, start_at))


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (the bridge's producer) gives ``key``: murmur2."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def _offer(settings: Settings, templates: list, rate: float, duration: float, start_at: float) -> dict:
    """The offer loop on aiokafka's batch API: records are appended to one batch per partition
    (the partition a site's key hashes to, computed once per site) and each tick's batches are
    sent whole. Why not a per-record ``send``: kafka-python's took 140 us of CPU per record, so the
    producers needed 70 % of a core of the machine's two to offer 50,000 readings/s, CPU the
    worker and the database under test then did not have."""
    prod = kafka_clients.aio_producer(settings, BRIDGE, acks=1, max_batch_size=1024 * 1024)
    await prod.start()
    try:
        topic = settings.topic(topics.READINGS)
        partitions = len(await prod.partitions_for(topic))  # connected, metadata in hand before the start
        where = [partition_of(t[0], partitions) for t in templates]
        print("ready", flush=True)
        late = max(0.0, time.time() - start_at)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        sent = await _send_loop(prod, topic, templates, where, rate, duration)
        await prod.flush()
    finally:
        await prod.stop()
    return {"sent": sent, "late_s": round(late, 3)}


#: longest a partition's batch stays open, s (the old kafka-python producer's linger was 20 ms):
#: one produce request per partition per 20 ms, not one per record or per 5 ms tick
LINGER_S = 0.020


async def _send_loop(prod, topic: str, templates: list, where: list[int], rate: float, duration: float) -> int:
    """The records due by now (checked every ~5 ms) appended to their partition's open batch; a
    batch is sent when full or ``LINGER_S`` old. Returns how many records were sent."""
    start, n, i, last_ms, ts = time.monotonic(), 0, 0, -1, b""
    last_seq = [0] * len(templates)
    deliveries: list[asyncio.Future] = []
    batches: dict[int, tuple[float, object]] = {}  # partition -> (opened at, batch)

    async def send(p: int) -> None:
        _, batch = batches.pop(p)
        batch.close()
        deliveries.append(await prod.send_batch(batch, topic, partition=p))

    while (elapsed := time.monotonic() - start) < duration:
        for p in [p for p, (opened, _) in batches.items() if elapsed - opened >= LINGER_S]:
            await send(p)
        due = int(elapsed * rate) + 1
        if n >= due:
            await asyncio.sleep(min(0.005, (n + 1) / rate - elapsed))
            continue
        now = time.time()
        ms = int(now * 1000)
        if ms != last_ms:
            last_ms, ts = ms, ts_bytes(now)
        for _ in range(due - n):
            t, seq, p = templates[i], max(ms, last_seq[i] + 1), where[i]
            last_seq[i] = seq
            i = (i + 1) % len(templates)
            value = record(t, seq, ts)
            if p not in batches:
                batches[p] = (elapsed, prod.create_batch())
            if batches[p][1].append(key=t[0], value=value, timestamp=None) is None:  # full: send it
                await send(p)
                batches[p] = (elapsed, prod.create_batch())
                batches[p][1].append(key=t[0], value=value, timestamp=None)
            n += 1
        deliveries = [d for d in deliveries if not d.done() or d.exception() is not None]
        failed = next((d.exception() for d in deliveries if d.done()), None)
        if failed is not None:
            raise failed
    for p in list(batches):
        await send(p)
    await asyncio.gather(*deliveries)
    return n


def main(argv: list[str]) -> None:
    units_file, shard, shards, rate, duration, start_at = argv
    with open(units_file) as f:
        site_units = [(s, [tuple(m) for m in mats]) for s, mats in json.load(f)]
    mine = site_templates(site_units[int(shard)::int(shards)])
    print(json.dumps(offer(Settings.from_env(), mine, float(rate), float(duration), float(start_at))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
