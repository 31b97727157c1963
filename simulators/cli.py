"""``vreserve simulate``: the simulated site fleet and the simulated logistics system.

Each simulator module defines ``command`` (a click command); this group only collects them, so the
fleet and the logistics simulator are built independently.
"""
from __future__ import annotations

import importlib

import click

SIMULATOR_MODULES = ("simulators.fleet_cli", "simulators.logistics_cli")


@click.group()
def simulate() -> None:
    """Run simulated sites (sensor fleet) or a simulated logistics system."""


for _name in SIMULATOR_MODULES:
    try:
        simulate.add_command(importlib.import_module(_name).command)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise

commands = [simulate]
