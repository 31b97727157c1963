"""``vreserve bench <area>``: every ``bench/<area>.py`` that defines ``command`` is a subcommand."""
from __future__ import annotations

import click

from vreserve.plugins import mount

BENCH_MODULES = ("bench.ingest", "bench.stream", "bench.tsdb", "bench.optimizer", "bench.dispatcher",
                 "bench.supervision", "bench.alerts", "bench.api", "bench.console", "bench.contracts",
                 "bench.dead_letters")


@click.group()
def bench() -> None:
    """Benchmarks that print their figures (throughput, latency, solve time, memory)."""


mount(bench, BENCH_MODULES)

commands = [bench]
