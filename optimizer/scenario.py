"""The scenario the optimizer plans: the contract lives in :mod:`vreserve.scenario` (every stage
reads scenario files; the hall holds what they share). The optimizer's modules and its public API
(``from optimizer import Scenario, load_scenario, ...``) take the names from here.
"""
from __future__ import annotations

from vreserve.scenario import (PACK_DIR, Arcs, DistributionCentre, Material, Place, RescueCentre, Scenario,
                               ScenarioError, ScenarioFile, SupplySite, known_packs, load_scenario, parse_scenario)

__all__ = ["PACK_DIR", "Arcs", "DistributionCentre", "Material", "Place", "RescueCentre", "Scenario", "ScenarioError",
           "ScenarioFile", "SupplySite", "known_packs", "load_scenario", "parse_scenario"]
