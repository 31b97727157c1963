"""The limited-fleet variant of the demo (``--max-deliveries``, ``--min-lot``): the pack with
tighter delivery limits, written as a scenario file the emergency is declared with.

A real distribution centre has a fleet: it serves only so many rescue centres per period, and a
truck does not leave for a handful of boxes (issue 19). The limits are the optimizer's own model
fields (``vreserve/scenario.py``): ``max_deliveries_per_period`` on each distribution centre and
the scenario's ``min_lot`` (units of all materials together on a delivery arc that is used). A limit
not given keeps the pack's own value, so ``--max-deliveries 2`` alone does not drop the pack's
minimum lot.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

#: The file the limited scenario is written to, in the demo's output directory.
LIMITED_SCENARIO_FILE = "scenario_limited.json"


def limited_scenario(base: dict[str, Any], max_deliveries: int | None, min_lot: float | None) -> dict[str, Any]:
    """A copy of the scenario dict with the given limits set (``None``: the pack's own value kept)."""
    out = copy.deepcopy(base)
    if min_lot is not None:
        out["min_lot"] = float(min_lot)
    if max_deliveries is not None:
        for dc in out["distribution_centres"]:
            dc["max_deliveries_per_period"] = int(max_deliveries)
    return out


def describe_limits(scenario: dict[str, Any]) -> str:
    """The scenario's delivery limits in words, with their units (one line for the operator)."""
    per_dc = {dc["id"]: dc.get("max_deliveries_per_period") for dc in scenario["distribution_centres"]}
    if len(set(per_dc.values())) == 1:
        n = next(iter(per_dc.values()))
        fleet = ("no limit on the rescue centres a distribution centre serves per period" if n is None else
                 f"each distribution centre serves at most {n} rescue centres per period")
    else:
        fleet = "rescue centres served per period at most: " + ", ".join(
            f"{dc} {'no limit' if n is None else n}" for dc, n in per_dc.items())
    lot = scenario.get("min_lot")
    minimum = ("no minimum lot" if lot is None else
               f"no delivery below {lot:g} units (all materials together, each counted in its own unit)")
    return f"{fleet}; {minimum}"


def write_limited_scenario(base: dict[str, Any], max_deliveries: int | None, min_lot: float | None, out: Path,
                           say: Callable[[str], None]) -> Path | None:
    """With a limit given: the limited scenario written to ``out`` as JSON and said in one line;
    returns its path for ``emergency declare --demand`` (None: no limit given, the pack is declared)."""
    if max_deliveries is None and min_lot is None:
        return None
    scenario = limited_scenario(base, max_deliveries, min_lot)
    path = out / LIMITED_SCENARIO_FILE
    path.write_text(json.dumps(scenario, indent=1) + "\n", encoding="utf-8")
    say(f"limited fleet: {describe_limits(scenario)}; scenario written to {path}")
    return path
