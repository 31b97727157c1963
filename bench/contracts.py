"""``vreserve bench contracts``: the bridge's per-message cost of the record contracts.

What the bridge does per MQTT message with the contracts: decode and check the stock report
(``StockReport.from_json``) and encode the Kafka record (``ReadingBatch.to_json``); the stream
worker then decodes that record (``ReadingBatch.from_json``). Each is timed over the same
messages as the floor every JSON codec pays (orjson parse + orjson encode of the same object),
in the same run, so the ratio (codec / floor) is what to compare between two versions of the
code: it does not move with the machine's load the way the microseconds do.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import click
import orjson


def sample_payloads(n: int, materials: int) -> list[bytes]:
    """``n`` stock reports of ``materials`` readings each, as a site sends them."""
    ts = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return [orjson.dumps({"v": 1, "site_id": f"wuhan-{i:05d}", "seq": i,
                          "ts": (ts + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                          "readings": [{"material": f"m{j:02d}", "qty": float(i % 997 + j), "unit": "box"}
                                       for j in range(materials)]}) for i in range(n)]


def best_us(fn: Callable[[bytes], object], payloads: list[bytes], repeats: int) -> float:
    """Best of ``repeats`` passes, microseconds per message (the best pass is the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in payloads:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return best / len(payloads) * 1e6


def measure(n: int = 2000, materials: int = 20, repeats: int = 5) -> dict[str, float]:
    """Microseconds per message: floor, bridge (decode + encode), stream decode; and the ratios."""
    # imported here, not at the top: `vreserve --help` mounts every bench command and must not pay
    # for building the record models
    from vreserve.schemas.readings import ReadingBatch, StockReport

    payloads = sample_payloads(n, materials)
    now = datetime.now(timezone.utc)
    topic = "vr/v1/sites/wuhan-00001/stock"
    records = [ReadingBatch(StockReport.from_json(p), now, topic).to_json() for p in payloads]

    def floor(p: bytes) -> bytes:
        obj = orjson.loads(p)
        obj["received_at"], obj["mqtt_topic"] = "2026-12-01T00:00:00.000Z", topic
        return orjson.dumps(obj)

    def bridge(p: bytes) -> bytes:
        return ReadingBatch(StockReport.from_json(p), now, topic).to_json()

    by_record = dict(zip(payloads, records))
    out = {"floor_us": best_us(floor, payloads, repeats), "bridge_us": best_us(bridge, payloads, repeats),
           "stream_decode_us": best_us(lambda p: ReadingBatch.from_json(by_record[p]), payloads, repeats)}
    out["bridge_ratio"] = out["bridge_us"] / out["floor_us"]
    out["stream_decode_ratio"] = out["stream_decode_us"] / out["floor_us"]
    return out


@click.command("contracts")
@click.option("--messages", type=int, default=2000, show_default=True, help="Stock reports per pass.")
@click.option("--materials", type=int, default=20, show_default=True, help="Readings per report.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Passes; the best one counts.")
def command(messages: int, materials: int, repeats: int) -> None:
    """Per-message CPU cost of the stock-report contract on the bridge's path, vs the JSON floor."""
    click.echo(f"{messages:,} stock reports x {materials} readings, best of {repeats} passes ...")
    r = measure(messages, materials, repeats)
    click.echo(f"JSON floor (orjson parse + encode)   {r['floor_us']:8.1f} us/message")
    click.echo(f"bridge: report decode + record encode {r['bridge_us']:8.1f} us/message  "
               f"(ratio to floor {r['bridge_ratio']:.2f})")
    click.echo(f"stream worker: record decode          {r['stream_decode_us']:8.1f} us/message  "
               f"(ratio to floor {r['stream_decode_ratio']:.2f})")
