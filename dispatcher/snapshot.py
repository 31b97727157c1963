"""What the live virtual warehouse can give to a plan right now, per site and material.

The rule (shared with supervision, whose audits lower ``trust``):

    available = floor( max(0, min(reported, committed) x trust - reserved) )

* only ``active`` sites of the region (and of the emergency's grid cells, when it names some);
* only (site, material) pairs with a contract valid on the planning day (``committed`` is the sum
  of the valid contracts' ``committed_qty``); no contract, no supply;
* ``reported`` is the site's latest accepted reading (``stock_latest``); a site that never
  reported gives nothing, and ``available`` never exceeds ``reported`` (trust <= 1);
* **stale** stock gives nothing: a reading older than the contract's reporting interval
  (``contract_site_terms``, default :data:`DEFAULT_REPORTING_INTERVAL_S`) x
  :data:`STALE_TOLERANCE` is left out until the site reports again;
* **distrusted** stock gives nothing: a (site, material) with an open critical unexplained
  finding (``pick_not_reflected``, ``above_capacity``, or an ``unexplained_change`` the size of the stock: numbers
  without goods) is left out until the finding is resolved. Both are kept in the rows
  (``left_out`` units, ``left_out_reason``) so the plan summary says what it left out and why;
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

from dispatcher import book

#: Seconds a reading must be newer than a pick before it is trusted to show the pick.
PICK_REFLECTED_AFTER_S = 0.5
#: A contract's reporting interval when it states none (= the fleet's VR_READING_INTERVAL_S default).
DEFAULT_REPORTING_INTERVAL_S = 10.0
#: A reading older than this many reporting intervals is stale: the stock is left out of plans.
#: Generous on purpose (5 min at 10 s): a site that missed a few readings still counts.
STALE_TOLERANCE = 30.0


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
    #: Units the rule would have given but the plan leaves out (stale or distrusted), and why.
    left_out: int = 0
    left_out_reason: str = ""


def available_qty(reported: float, committed: float, trust: float, reserved: float) -> int:
    """Whole units a plan may count on: min(reported, committed) x trust - reserved, floored, >= 0."""
    raw = min(max(reported, 0.0), max(committed, 0.0)) * min(max(trust, 0.0), 1.0) - max(reserved, 0.0)
    # a hair of tolerance so that 99.99999999 (float noise) is 100 units, not 99
    return max(0, int(math.floor(raw + 1e-9)))


def supply_snapshot(
    conn,
    region: str,
    at: datetime,
    grid_cells: Sequence[str] | None = None,
    materials: Sequence[str] | None = None,
    exclude_orders: Iterable[str] = (),
    stale_tolerance: float = STALE_TOLERANCE,
) -> list[SupplyAvailability]:
    """Every usable (site, material) of the region at ``at`` with what a plan may take from it
    (stale or distrusted stock: ``available`` 0, what it would have been in ``left_out``).

    ``exclude_orders``: order ids not to count as reserved (the open orders the plan being made
    is about to supersede). Read-only; runs in the caller's transaction.
    """
    cells = list(grid_cells or [])
    mats = list(materials or [])
    rows = book.supply_rows(conn, region, at, cells, mats, exclude_orders, PICK_REFLECTED_AFTER_S,
                            DEFAULT_REPORTING_INTERVAL_S)
    return availability(rows, at, stale_tolerance)


def availability(rows: Iterable[tuple], at: datetime,
                 stale_tolerance: float = STALE_TOLERANCE) -> list[SupplyAvailability]:
    """The rule applied to :func:`dispatcher.book.supply_rows`' rows (pure)."""
    out = []
    for (site_id, cell, tier, lat, lon, trust, material, unit, reported, ts, committed, contracted,
         reserved, interval_s, finding) in rows:
        available = available_qty(reported, committed, trust, reserved)
        reason = left_out_reason(at, ts, interval_s, stale_tolerance, finding)
        out.append(
            SupplyAvailability(
                site_id=site_id, grid_cell=cell, tier=tier, lat=lat, lon=lon, material_id=material,
                unit=unit, reported=reported, committed=committed, contracted=contracted,
                trust=trust, reserved=reserved, available=0 if reason else available, reading_ts=ts,
                left_out=available if reason else 0, left_out_reason=reason,
            )
        )
    return out


def left_out_reason(at: datetime, reading_ts: datetime | None, interval_s: float, tolerance: float,
                    open_finding: str | None) -> str:
    """Why a (site, material) gives a plan nothing despite its reading ('' = it counts)."""
    if open_finding:
        return f"distrusted: open finding {open_finding}"
    if reading_ts is not None:
        age = (at - reading_ts).total_seconds()
        if age > interval_s * tolerance:
            return (f"stale: last reading {age:.0f} s old > {tolerance:g} x the {interval_s:g} s "
                    "reporting interval")
    return ""


def left_out_summary(rows: Sequence[SupplyAvailability], limit: int = 5) -> tuple[dict[str, int], str]:
    """Per material the units left out, and one line for the plan's message (None left out: '')."""
    per_mat: dict[str, int] = {}
    stale: dict[str, int] = {}
    distrusted: dict[str, int] = {}
    examples: list[str] = []
    for r in rows:
        if not r.left_out_reason:
            continue
        per_mat[r.material_id] = per_mat.get(r.material_id, 0) + r.left_out
        bucket = stale if r.left_out_reason.startswith("stale") else distrusted
        bucket[r.material_id] = bucket.get(r.material_id, 0) + 1
        if len(examples) < limit:
            examples.append(f"{r.site_id}/{r.material_id} {r.left_out} {r.unit} ({r.left_out_reason})")
    if not per_mat:
        return per_mat, ""
    units = {r.material_id: r.unit for r in rows}
    totals = ", ".join(f"{m} {q} {units.get(m, '')}".rstrip() for m, q in sorted(per_mat.items()))
    counts = f"{sum(stale.values())} stale, {sum(distrusted.values())} distrusted site-material(s)"
    return per_mat, f"stock left out: {totals} ({counts}; e.g. {'; '.join(examples)})"


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
