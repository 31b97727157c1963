"""An emergency as the ``emergencies`` table holds it: read by the dispatcher (to plan) and by
supervision (to settle), so it lives in the shared place rather than in either stage."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: Upper bound of the time carriers get to accept a published order before a later plan may
#: supersede it, s (the grace is a quarter of a period, at most this).
ACCEPT_GRACE_MAX_S = 30.0


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

    def period_start(self, period: int) -> datetime:
        """When ``period`` (1-based) begins: the declaration plus whole periods."""
        return self.declared_at + timedelta(seconds=(period - 1) * self.period_length_s)


def supersede_cutoff(em: Emergency, period: int) -> datetime:
    """Orders published after this instant are not superseded by ``period``'s plan.

    It is the period's start minus a grace (a quarter period, at most ``ACCEPT_GRACE_MAX_S``):
    carriers accept within seconds, so an order still open that long after its publication was
    not taken; one published a moment before the next plan (held through a broker outage) must not
    be cancelled by it. From the period's start, not the clock: a dispatcher that plans the period
    late (after a restart) supersedes what a punctual one would have.
    """
    grace = min(em.period_length_s / 4.0, ACCEPT_GRACE_MAX_S)
    return em.period_start(period) - timedelta(seconds=grace)


def accept_by(em: Emergency, published_after: datetime) -> datetime | None:
    """The earliest instant a later plan may supersede an order published after ``published_after``
    that nobody accepted: the start of the first period whose cutoff it precedes (None: no later
    period of the emergency can supersede it)."""
    for period in range(1, em.periods + 1):
        if published_after < supersede_cutoff(em, period) and em.period_start(period) > published_after:
            return em.period_start(period)
    return None


#: The columns :func:`emergency_from_row` reads, in its order (for ``SELECT {COLUMNS} FROM emergencies``).
COLUMNS = ("emergency_id, region, grid_cells, declared_at, periods, period_length_s, demand_source,"
           " demand_scale, ended_at, closed_out_at")


def emergency_from_row(row) -> Emergency:
    return Emergency(row[0], row[1], tuple(row[2] or ()), row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def get_emergency(conn, emergency_id: str) -> Emergency | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM emergencies WHERE emergency_id = %s", (emergency_id,)).fetchone()
    return emergency_from_row(row) if row else None
