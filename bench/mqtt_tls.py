"""Cost of TLS on the broker path: the same QoS 1 traffic through a plain and a TLS Mosquitto, one run.

Two throw-away Mosquitto instances from the local runner (temporary state folders, free ports, the
project's config and dynamic-security rules), one publisher and one subscriber (service account)
each: ``python -m bench.mqtt_tls [messages] [rounds]``. Plain and TLS alternate, so machine noise
hits both; the figure to read is the ratio of the medians.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.procs import free_port
from deploy.runner import Mosquitto
from vreserve.mqtt import connect_and_wait, new_client
from vreserve.settings import Settings


def _broker(tls: bool) -> tuple[Settings, Mosquitto]:
    state = Path(tempfile.mkdtemp(prefix=f"vr-bench-{'tls' if tls else 'plain'}-"))
    scheme = "mqtts" if tls else "mqtt"
    settings = Settings(mqtt_url=f"{scheme}://vr-service@127.0.0.1:{free_port()}", state_dir=state)
    broker = Mosquitto(settings)
    broker.up(progress=lambda _m: None)
    return settings, broker


def _one_round(settings: Settings, messages: int, payload: bytes) -> float:
    """Messages per second from publish of the first to receipt of the last (QoS 1 both ways)."""
    addr = settings.mqtt
    got = threading.Event()
    count = [0]

    def on_message(_c, _u, _m) -> None:
        count[0] += 1
        if count[0] == messages:
            got.set()

    sub = new_client(addr, clean_session=True)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    pub = new_client(addr)
    pub.max_inflight_messages_set(1000)
    try:
        assert not connect_and_wait(sub, addr).is_failure
        sub.subscribe("vr/bench/tls", qos=1)
        assert subscribed.wait(10)
        assert not connect_and_wait(pub, addr).is_failure
        t0 = time.perf_counter()
        for _ in range(messages):
            pub.publish("vr/bench/tls", payload, qos=1)
        if not got.wait(120):
            raise RuntimeError(f"only {count[0]} of {messages} messages arrived")
        return messages / (time.perf_counter() - t0)
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()


def main(messages: int = 20_000, rounds: int = 3) -> dict[str, float]:
    payload = b'{"v":1,"site_id":"bench-00001","ts":"2026-01-01T00:00:00Z","seq":1,"readings":' + b"[" + b",".join(
        [b'{"material":"medicine","qty":12.5,"unit":"box"}'] * 4) + b"]}"
    plain, plain_broker = _broker(tls=False)
    tls, tls_broker = _broker(tls=True)
    rates: dict[str, list[float]] = {"plain": [], "tls": []}
    try:
        for _ in range(rounds):
            rates["plain"].append(_one_round(plain, messages, payload))
            rates["tls"].append(_one_round(tls, messages, payload))
    finally:
        plain_broker.down(lambda _m: None)
        tls_broker.down(lambda _m: None)
    result = {k: statistics.median(v) for k, v in rates.items()}
    result["tls_over_plain"] = result["tls"] / result["plain"]
    print(f"{messages} QoS 1 messages of {len(payload)} B, {rounds} alternating rounds, medians:")
    print(f"  plain {result['plain']:,.0f} msg/s   TLS {result['tls']:,.0f} msg/s   "
          f"TLS / plain = {result['tls_over_plain']:.2f}")
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
