"""What the live virtual warehouse can give to a plan right now, per site and material.

The rule (shared with supervision, whose audits lower ``trust``):

    available = floor( max(0, min(reported, committed) x trust - reserved) )

* only ``active`` sites of the region (and of the emergency's grid cells, when it names some);
* only (site, material) pairs with a contract valid on the planning day (``committed`` is the sum
  of the valid contracts' ``committed_qty``); no contract, no supply;
* ``reported`` is the site's latest accepted reading (``stock_latest``); a site that never
  reported gives nothing, and ``available`` never exceeds ``reported`` (trust <= 1);
* ``reserved`` is what supply-leg dispatch orders already promise from the site: orders not yet
  picked (open, accepted) with their ordered quantity, plus picked ones (in transit, delivered)
  with the quantity the carrier reported picked in its ``in_transit`` status (a short pick
  reserves only what left; without a figure, the ordered quantity)
  until the site's next reading is newer than the pick (then the reading itself shows the stock gone).

Quantities are floored to whole units because the optimizer ships whole units; a fraction of a
unit is never promised.

Supply nodes for the optimizer: a centralized site is a node of its own; decentralized sites
(households, small shops) are grouped per grid cell into one crowd node ``cell:<grid_cell>``,
whose allocation is later split into pick orders at individual sites (:mod:`dispatcher.crowd`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

#: Seconds a reading must be newer than a pick before it is trusted to show the pick.
PICK_REFLECTED_AFTER_S = 0.5


@dataclass(frozen=True)
class SupplyAvailability:
    """One (site, material): the numbers behind what a plan may take from it, with the unit."""

    site_id: str
    grid_cell: str
    tier: str
    lat: float
    lon: float
    material_id: str
    unit: str
    reported: float
    committed: float
    contracted: float
    trust: float
    reserved: float
    available: int
    reading_ts: datetime | None = None


def available_qty(reported: float, committed: float, trust: float, reserved: float) -> int:
    """Whole units a plan may count on: min(reported, committed) x trust - reserved, floored, >= 0."""
    raw = min(max(reported, 0.0), max(committed, 0.0)) * min(max(trust, 0.0), 1.0) - max(reserved, 0.0)
    # a hair of tolerance so that 99.99999999 (float noise) is 100 units, not 99
    return max(0, int(math.floor(raw + 1e-9)))


#: The quantity a carrier reported picked for order ``o`` (its first ``in_transit`` status with a qty).
PICKED_QTY_SQL = ("(SELECT e.qty FROM order_status_events e WHERE e.order_id = o.order_id"
                  " AND e.status = 'in_transit' AND e.qty IS NOT NULL ORDER BY e.at LIMIT 1)")

_SNAPSHOT_SQL = """
WITH committed AS (
    SELECT site_id, material_id, sum(committed_qty)::float8 AS committed
    FROM contracts
    WHERE valid_from <= %(day)s AND valid_to >= %(day)s
    GROUP BY site_id, material_id
), reserved AS (
    SELECT o.origin AS site_id, o.material_id,
           sum(CASE WHEN o.status IN ('in_transit', 'delivered') THEN coalesce(""" + PICKED_QTY_SQL + """, o.qty)
                    ELSE o.qty END)::float8 AS reserved
    FROM dispatch_orders o
    LEFT JOIN stock_latest sl ON sl.site_id = o.origin AND sl.material_id = o.material_id
    WHERE o.leg = 'supply'
      AND NOT (o.order_id = ANY(%(exclude)s))
      AND (o.status IN ('open', 'accepted')
           OR (o.status IN ('in_transit', 'delivered')
               AND (o.picked_at IS NULL OR sl.ts IS NULL
                    OR sl.ts <= o.picked_at + make_interval(secs => %(reflect)s))))
    GROUP BY o.origin, o.material_id
)
SELECT s.site_id, s.grid_cell, s.tier, s.lat, s.lon, s.trust,
       sl.material_id, sl.unit, sl.qty::float8, sl.ts,
       c.committed, coalesce(sm.contracted_qty, 0)::float8, coalesce(r.reserved, 0)
FROM sites s
JOIN stock_latest sl ON sl.site_id = s.site_id
JOIN committed c ON c.site_id = s.site_id AND c.material_id = sl.material_id
LEFT JOIN site_materials sm ON sm.site_id = s.site_id AND sm.material_id = sl.material_id
LEFT JOIN reserved r ON r.site_id = s.site_id AND r.material_id = sl.material_id
WHERE s.region = %(region)s
  AND s.status = 'active'
  AND (%(all_cells)s OR s.grid_cell = ANY(%(cells)s))
  AND (%(all_materials)s OR sl.material_id = ANY(%(materials)s))
ORDER BY s.site_id, sl.material_id
"""


def supply_snapshot(
    conn,
    region: str,
    at: datetime,
    grid_cells: Sequence[str] | None = None,
    materials: Sequence[str] | None = None,
    exclude_orders: Iterable[str] = (),
) -> list[SupplyAvailability]:
    """Every usable (site, material) of the region at ``at`` with what a plan may take from it.

    ``exclude_orders``: order ids not to count as reserved (the open orders the plan being made
    is about to supersede). Read-only; runs in the caller's transaction.
    """
    cells = list(grid_cells or [])
    mats = list(materials or [])
    rows = conn.execute(
        _SNAPSHOT_SQL,
        {
            "day": at.date(),
            "region": region,
            "all_cells": not cells,
            "cells": cells,
            "all_materials": not mats,
            "materials": mats,
            "exclude": list(exclude_orders),
            "reflect": PICK_REFLECTED_AFTER_S,
        },
    ).fetchall()
    out = []
    for (site_id, cell, tier, lat, lon, trust, material, unit, reported, ts, committed, contracted,
         reserved) in rows:
        out.append(
            SupplyAvailability(
                site_id=site_id, grid_cell=cell, tier=tier, lat=lat, lon=lon, material_id=material,
                unit=unit, reported=reported, committed=committed, contracted=contracted,
                trust=trust, reserved=reserved,
                available=available_qty(reported, committed, trust, reserved), reading_ts=ts,
            )
        )
    return out


# --------------------------------------------------------------------------- supply nodes
@dataclass
class SupplyNode:
    """A supply node of the optimizer: one centralized site, or the crowd of one grid cell."""

    node_id: str
    kind: str  # "site" or "cell"
    lat: float
    lon: float
    #: material -> whole units available at the node
    available: dict[str, int] = field(default_factory=dict)
    #: the individual (site, material) rows behind it, for crowd disaggregation
    members: list[SupplyAvailability] = field(default_factory=list)


def node_id_for(row: SupplyAvailability) -> str:
    return row.site_id if row.tier == "centralized" else f"cell:{row.grid_cell}"


def supply_nodes(rows: Iterable[SupplyAvailability]) -> list[SupplyNode]:
    """Group availability rows into supply nodes (sorted by id, so the model is built identically)."""
    nodes: dict[str, SupplyNode] = {}
    coords: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        nid = node_id_for(row)
        node = nodes.get(nid)
        if node is None:
            node = nodes[nid] = SupplyNode(nid, "site" if row.tier == "centralized" else "cell", 0.0, 0.0)
            coords[nid] = []
        node.members.append(row)
        node.available[row.material_id] = node.available.get(row.material_id, 0) + row.available
        coords[nid].append((row.lat, row.lon))
    for nid, node in nodes.items():
        pts = coords[nid]
        node.lat = sum(p[0] for p in pts) / len(pts)
        node.lon = sum(p[1] for p in pts) / len(pts)
    return [nodes[k] for k in sorted(nodes)]
