"""An emergency as the ``emergencies`` table holds it: read by the dispatcher (to plan) and by
supervision (to settle), so it lives in the shared place rather than in either stage."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Emergency:
    emergency_id: str
    region: str
    grid_cells: tuple[str, ...]
    declared_at: datetime
    periods: int
    period_length_s: float
    demand_source: str
    demand_scale: float
    ended_at: datetime | None
    closed_out_at: datetime | None

    def period_at(self, now: datetime) -> int:
        """The period running at ``now`` (1-based), from the declaration time: never from memory."""
        elapsed = (now - self.declared_at).total_seconds()
        return max(1, int(elapsed // self.period_length_s) + 1)


#: The columns :func:`emergency_from_row` reads, in its order (for ``SELECT {COLUMNS} FROM emergencies``).
COLUMNS = ("emergency_id, region, grid_cells, declared_at, periods, period_length_s, demand_source,"
           " demand_scale, ended_at, closed_out_at")


def emergency_from_row(row) -> Emergency:
    return Emergency(row[0], row[1], tuple(row[2] or ()), row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def get_emergency(conn, emergency_id: str) -> Emergency | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM emergencies WHERE emergency_id = %s", (emergency_id,)).fetchone()
    return emergency_from_row(row) if row else None
