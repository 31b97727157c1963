"""Cost of the whole secured ingest path: MQTT over TLS into Kafka over SASL_SSL (SCRAM-SHA-512),
against MQTT plain into Kafka PLAINTEXT, in one run.

``python -m bench.ingest_secure [rounds] [sites] [rates]``: two throw-away single-node Kafka
brokers (one SASL_SSL, one PLAINTEXT; ``bench.kafka_tls``), and for each round the ingest
benchmark (``bench.ingest``: private Mosquitto, fleet, bridge, LogAppendTime latency) once secured
and once plain, alternating so machine noise hits both. Read the ratios of the medians.
"""
from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

from bench import ingest, kafka_tls
from vreserve.settings import Settings


def kafka_stack(base: Settings, secured: bool) -> tuple[Settings, object]:
    """``base`` pointed at a private Kafka broker of the given kind (``bench.kafka_tls``): its
    address and security, and for SASL_SSL its own secrets and CA; the database is the configured
    one (its DSN already names its CA and password file). Returns (settings, broker)."""
    broker_settings, broker = kafka_tls._broker(base, secured)
    state = Path(broker_settings.state_dir)
    return base.with_(kafka_bootstrap=broker_settings.kafka_bootstrap, kafka_security=broker_settings.kafka_security,
                      secrets_dir=str((state / "secrets").resolve()) if secured else base.secrets_dir,
                      kafka_ca_file=str((state / "ca" / "ca.crt").resolve()) if secured else base.kafka_ca_file), broker


def _stack(base: Settings, secured: bool) -> tuple[Settings, object]:
    """Settings for a private broker of the given kind, the MQTT scheme to match."""
    settings, broker = kafka_stack(base, secured)
    user = base.mqtt.username
    host_port = base.mqtt_url.split("@", 1)[1]
    return settings.with_(mqtt_url=f"{'mqtts' if secured else 'mqtt'}://{user}:{base.mqtt.password}@{host_port}"), broker


def main(rounds: int = 2, sites: int = 2000, rates: tuple[float, ...] = (400.0, 800.0)) -> dict:
    base = Settings.from_env()
    stacks = {}
    try:
        for secured in (True, False):
            stacks[secured] = _stack(base, secured)
        runs: dict[tuple[bool, float], list[ingest.Step]] = {}
        for r in range(rounds):
            for secured in (True, False):
                label = "TLS+SASL" if secured else "plain"
                print(f"== round {r + 1}: {label}", flush=True)
                steps = ingest.main(stacks[secured][0], sites=sites, materials=10, rates=rates, step_s=8.0,
                                    warmup_s=4.0, gateways=2, fleet_procs=1, baseline=False,
                                    echo=lambda m: print(f"   {m}", flush=True))
                for step in steps:
                    runs.setdefault((secured, step.rate), []).append(step)
    finally:
        for settings, broker in stacks.values():
            broker.down(lambda _m: None)
            shutil.rmtree(broker.settings.state_dir, ignore_errors=True)
    return _report(runs, rates)


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _report(runs: dict, rates: tuple[float, ...]) -> dict:
    out = {}
    for rate in rates:
        row = {}
        for secured in (True, False):
            steps = runs.get((secured, rate), [])
            row[secured] = (_median([s.delivered_per_s for s in steps]), _median([s.p50_ms for s in steps]),
                            _median([s.p99_ms for s in steps]), _median([s.cpu.get("bridge") for s in steps]), len(steps))
        (d1, p50a, p99a, cpu1, n1), (d0, p50b, p99b, cpu0, n0) = row[True], row[False]
        ratio = d1 / d0 if d1 and d0 else None
        print(f"{rate:.0f} msg/s offered: TLS+SASL {d1 or 0:.0f} msg/s p50 {p50a or 0:.0f} ms p99 {p99a or 0:.0f} ms"
              f" bridge CPU {cpu1 or 0:.0f} % ({n1} runs) | plain {d0 or 0:.0f} msg/s p50 {p50b or 0:.0f} ms"
              f" p99 {p99b or 0:.0f} ms bridge CPU {cpu0 or 0:.0f} % ({n0} runs) | delivered ratio "
              + (f"{ratio:.2f}" if ratio else "n/a"), flush=True)
        out[rate] = {"secured": row[True], "plain": row[False], "ratio": ratio}
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 2, int(args[1]) if len(args) > 1 else 2000,
         tuple(float(x) for x in args[2].split(",")) if len(args) > 2 else (400.0, 800.0))
