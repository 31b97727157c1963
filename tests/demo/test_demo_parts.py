"""The demo's pure parts (the end-to-end run is tests/dispatcher/test_demo.py, on the real services)."""
from __future__ import annotations

import subprocess
import sys

from demo.registry import pack_supply, size_registry_to_pack
from demo.services import leftover_demo_sessions
from dispatcher.live import in_registry_units
from vreserve.registry_generate import generate_registry
from optimizer import load_scenario


def test_leftover_sessions_come_from_deleted_demo_prefixes_and_spare_live_ones():
    old = {"demo0a0a0a.", "demo1b1b1b."}
    assert leftover_demo_sessions(old, {"demo1b1b1b."}) == ["demo0a0a0a.bridge-1"]
    assert leftover_demo_sessions(set(), {"demo1b1b1b."}) == []


def test_registry_stock_is_sized_to_the_pack_supply_in_whole_units():
    base = load_scenario("wuhan").to_dict()
    registry = generate_registry(120, seed=3, region="wuhan")
    base, _ = in_registry_units(base, registry.material_units())
    sized, figures = size_registry_to_pack(registry, base, "wuhan")
    targets = pack_supply(base)
    assert figures and set(figures) == set(targets)
    for m, f in figures.items():
        held = sum(st.materials[m].contracted_qty for st in sized.sites.values()
                   if st.region == "wuhan" and m in st.materials)
        assert held == f["after"]
        if f["sites"]:
            assert f["after"] == round(targets[m])
            assert all(float(st.materials[m].contracted_qty).is_integer()
                       for st in sized.sites.values() if m in st.materials and st.region == "wuhan")


def test_demo_command_keeps_its_options():
    out = subprocess.run([sys.executable, "-m", "vreserve.cli", "demo", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--sites", "--region", "--scenario", "--periods", "--period-length", "--demand-scale",
                   "--interval", "--fail-rate", "--seed", "--stock-from-pack", "--out", "--quiet", "--database"):
        assert option in out.stdout
