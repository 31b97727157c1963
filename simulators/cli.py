"""``vreserve simulate``: the simulated site fleet and the simulated logistics system.

Each simulator module defines ``command`` (a click command); this group only collects them, so the
fleet and the logistics simulator are built independently.
"""
from __future__ import annotations

import click

from vreserve.plugins import mount

SIMULATOR_MODULES = ("simulators.fleet_cli", "simulators.logistics_cli")


@click.group()
def simulate() -> None:
    """Run simulated sites (sensor fleet) or a simulated logistics system."""


mount(simulate, SIMULATOR_MODULES)

commands = [simulate]
