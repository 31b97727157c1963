"""Small scenario builders for optimizer tests (pure code: no services)."""
from __future__ import annotations

import copy
from typing import Any



IND = {"consumption_rate": 1, "reproduction_rate": 1, "durability": 0, "danger_to_life": 1, "irreplaceability": 1}


def material(mid: str, theta: float | None = None, price: float = 1.0, **ind) -> dict[str, Any]:
    m: dict[str, Any] = {"id": mid, "unit": "units", "price": price, "indicators": dict(IND, **ind)}
    if theta is not None:
        m["theta"] = theta
    return m


def one_chain(periods: int = 2, **overrides) -> dict[str, Any]:
    """One material, one site, one centre, one rescue centre; override any top-level key."""
    sc: dict[str, Any] = {
        "name": "chain", "periods": periods,
        "materials": [material("med")],
        "supply_sites": [{"id": "W1", "supply": {"med": 0}}],
        "distribution_centres": [{"id": "J1", "capacity": 1000, "initial": {"med": 0}}],
        "rescue_centres": [{"id": "K1", "demand": {"med": [0] * periods}}],
    }
    sc.update(copy.deepcopy(overrides))
    return sc


