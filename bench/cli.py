"""``vreserve bench <area>``: every ``bench/<area>.py`` that defines ``command`` is a subcommand."""
from __future__ import annotations

import importlib

import click

BENCH_MODULES = ("bench.ingest", "bench.stream", "bench.optimizer", "bench.dispatcher", "bench.supervision")


@click.group()
def bench() -> None:
    """Benchmarks that print their figures (throughput, latency, solve time, memory)."""


for _name in BENCH_MODULES:
    try:
        bench.add_command(importlib.import_module(_name).command)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise

commands = [bench]
