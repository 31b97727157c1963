"""Crowd disaggregation: a grid cell's allocation becomes pick orders at individual sites.

The optimizer sees the decentralized sites of a grid cell as one supply node. Its allocation is
split greedily: sites with more contracted stock and better reliability (contracted x trust) are
picked first, each up to what it has available (which is never more than it reported), so a cell's
allocation is served by as few, as reliable, sites as possible. The split is deterministic (ties
broken by site id), so the same plan always gives the same pick orders and order ids.
"""
from __future__ import annotations

from typing import Iterable

from dispatcher.snapshot import SupplyAvailability


class Remaining:
    """What is still unallocated per (site, material) while a plan's flows are split, in units."""

    def __init__(self, rows: Iterable[SupplyAvailability]):
        self.left: dict[tuple[str, str], int] = {}
        self.score: dict[tuple[str, str], float] = {}
        for r in rows:
            self.left[(r.site_id, r.material_id)] = r.available
            self.score[(r.site_id, r.material_id)] = r.contracted * r.trust

    def split(self, members: Iterable[SupplyAvailability], material: str, qty: int) -> tuple[list[tuple[str, int]], int]:
        """Pick ``qty`` units of ``material`` from ``members``; returns [(site_id, units)] and the shortfall."""
        candidates = sorted(
            {r.site_id for r in members if r.material_id == material},
            key=lambda sid: (-self.score[(sid, material)], sid),
        )
        picks: list[tuple[str, int]] = []
        need = int(qty)
        for sid in candidates:
            if need <= 0:
                break
            have = self.left.get((sid, material), 0)
            take = min(have, need)
            if take > 0:
                picks.append((sid, take))
                self.left[(sid, material)] = have - take
                need -= take
        return picks, max(need, 0)
