"""Safety levels per grid cell and material: below one, the stream worker raises a low_stock alert
and the virtual warehouse shows the cell's available stock net of it.

Managed here (the `vreserve safety` command and the HTTP API call these functions), with the
actor who set each level. Quantities are in the material's unit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class SafetyLevel:
    grid_cell: str
    material_id: str
    safety_qty: float
    unit: str
    set_by: str
    set_at: datetime


def list_levels(conn: psycopg.Connection, grid_cell: str | None = None,
                material_id: str | None = None) -> list[SafetyLevel]:
    rows = conn.execute(
        "SELECT sl.grid_cell, sl.material_id, sl.safety_qty::float8, m.unit, sl.set_by, sl.set_at"
        " FROM safety_levels sl JOIN materials m USING (material_id)"
        " WHERE (%(cell)s::text IS NULL OR sl.grid_cell = %(cell)s)"
        "   AND (%(mat)s::text IS NULL OR sl.material_id = %(mat)s)"
        " ORDER BY sl.grid_cell, sl.material_id", {"cell": grid_cell, "mat": material_id}).fetchall()
    return [SafetyLevel(*r) for r in rows]


def set_level(conn: psycopg.Connection, grid_cell: str, material_id: str, qty: float, actor: str) -> SafetyLevel:
    """Set (or change) the level of a cell that has sites, for a known material; qty >= 0."""
    if not actor or not actor.strip():
        raise ValueError("setting a safety level needs an actor")
    if isinstance(qty, bool) or not math.isfinite(qty) or qty < 0:
        raise ValueError(f"safety quantity must be a finite number >= 0, got {qty!r}")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM materials WHERE material_id = %s", (material_id,)).fetchone() is None:
            raise ValueError(f"unknown material {material_id!r}")
        if conn.execute("SELECT 1 FROM sites WHERE grid_cell = %s LIMIT 1", (grid_cell,)).fetchone() is None:
            raise ValueError(f"no site in grid cell {grid_cell!r}")
        conn.execute("INSERT INTO safety_levels (grid_cell, material_id, safety_qty, set_by, set_at)"
                     " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (grid_cell, material_id) DO UPDATE"
                     " SET safety_qty = EXCLUDED.safety_qty, set_by = EXCLUDED.set_by, set_at = now()",
                     (grid_cell, material_id, qty, actor.strip()))
    return list_levels(conn, grid_cell, material_id)[0]


def remove_level(conn: psycopg.Connection, grid_cell: str, material_id: str) -> bool:
    """Remove a level (its open low_stock alert then resolves at the worker's next check)."""
    cur = conn.execute("DELETE FROM safety_levels WHERE grid_cell = %s AND material_id = %s",
                       (grid_cell, material_id))
    return cur.rowcount > 0
