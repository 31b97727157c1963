"""Cost of TLS + SASL (SCRAM-SHA-512) on the stream worker: the worker draining the same backlog of
readings records from a SASL_SSL broker and from a PLAINTEXT broker, in one run.

``python -m bench.stream_secure [records] [rounds] [sites]``: two throw-away single-node Kafka
brokers (one SASL_SSL, one PLAINTEXT; ``bench.ingest_secure.kafka_stack``), one private database
with a generated registry and the same backlog produced to each broker (``bench.stream_backlog``).
Then per round ``vreserve stream run`` drains the secured backlog, then the plain one, each from
empty readings tables and offset 0 (alternating, so machine noise hits both), timed from its first
record to the last reading committed. The database (the configured one, TLS + scram) is the same
for both: only the worker's Kafka client differs. Printed: each run, then the medians, readings/s
and client CPU per 10,000 readings, and the ratios TLS+SASL / plain.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from bench import ingest_secure, stream_backlog
from bench.procs import echo as _echo
from bench.stream_backlog import Drain
from vreserve.settings import Settings

LABELS = {True: "TLS+SASL", False: "plain"}


def main(records: int = 100_000, rounds: int = 2, sites: int = 10_000, materials: int = 10, echo=_echo) -> dict:
    base = Settings.from_env()
    token = uuid.uuid4().hex[:6]
    state = Path(tempfile.mkdtemp(prefix="vr-bench-stream-secure-"))
    stacks: dict[bool, tuple[Settings, object]] = {}
    runs: dict[bool, list[Drain]] = {True: [], False: []}
    try:
        for secured in (True, False):
            stacks[secured] = ingest_secure.kafka_stack(base, secured)
        with stream_backlog.private_database(base, token, sites, materials) as (dsn, site_units):
            benches = {secured: stream_backlog.bench_settings(settings, f"bsecure{token}.", dsn, state)
                       for secured, (settings, _broker) in stacks.items()}
            expected = {}
            for secured, bench in benches.items():
                echo(f"setup: {LABELS[secured]} broker {bench.kafka_bootstrap} ({bench.kafka_security})")
                expected[secured] = stream_backlog.fill_topic(bench, site_units, records, echo)
            for r in range(rounds):
                for secured in (True, False):
                    stream_backlog.reset(benches[secured])
                    drain = stream_backlog.drain_worker(benches[secured], expected[secured], timeout_s=900)
                    drain.name = f"{LABELS[secured]} {r + 1}"
                    runs[secured].append(drain)
                    echo(drain.line())
    finally:
        for settings, broker in stacks.values():
            broker.down(lambda _m: None)
            shutil.rmtree(broker.settings.state_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    return report(runs, echo)


def report(runs: dict[bool, list[Drain]], echo) -> dict:
    """Medians per kind and the ratios TLS+SASL / plain."""
    out: dict = {}
    for secured, drains in runs.items():
        if not drains:
            continue
        out[LABELS[secured]] = {
            "readings_s": statistics.median(d.rate for d in drains),
            "client_cpu_ms_per_10k": statistics.median(d.per_10k(d.cpu_s) for d in drains),
            "pg_cpu_ms_per_10k": statistics.median(d.per_10k(d.pg_cpu_s) for d in drains),
            "load": (min(d.load[0] for d in drains), max(d.load[1] for d in drains)), "runs": len(drains)}
    echo("")
    for name, m in out.items():
        echo(f"{name:<9} median of {m['runs']}: {m['readings_s']:>8,.0f} readings/s | client CPU "
             f"{m['client_cpu_ms_per_10k']:6.1f} ms, PostgreSQL CPU {m['pg_cpu_ms_per_10k']:6.1f} ms per 10,000 "
             f"readings | load average {m['load'][0]:.1f}-{m['load'][1]:.1f}")
    tls, plain = out.get("TLS+SASL"), out.get("plain")
    if tls and plain and plain["readings_s"] and plain["client_cpu_ms_per_10k"]:
        out["ratio_readings_s"] = tls["readings_s"] / plain["readings_s"]
        out["ratio_client_cpu"] = tls["client_cpu_ms_per_10k"] / plain["client_cpu_ms_per_10k"]
        echo(f"TLS+SASL / plain: readings/s {out['ratio_readings_s']:.2f}, "
             f"client CPU per 10,000 readings {out['ratio_client_cpu']:.2f}")
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    main(*args)
