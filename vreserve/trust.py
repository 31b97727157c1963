"""Trust: how much of a site's reported stock the planner may count on, moved by audits.

The planner counts on min(reported, committed) x trust from active sites only. An audit that finds
"numbers without goods" (counted well below reported) multiplies trust by the share actually found;
below ``suspend_below`` the site is suspended (never planned) until a passing audit reinstates it.
Rules and a worked example: docs/supervision.md ("Audits and trust").
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrustPolicy:
    #: A count may fall this share below the reported quantity before it is a discrepancy...
    tolerance_share: float = 0.10
    #: ...and by at least this many units (so counting 9 of 10 boxes is not "numbers without goods").
    tolerance_units: float = 1.0
    #: Below this trust a site is suspended: kept out of every plan until it passes an audit.
    suspend_below: float = 0.5
    #: What a passing audit adds to trust (and it never leaves a passing site below ``suspend_below``).
    pass_recovery: float = 0.2


@dataclass(frozen=True)
class CountCheck:
    material_id: str
    reported_qty: float
    counted_qty: float
    discrepancy: bool

    @property
    def missing_qty(self) -> float:
        return max(0.0, self.reported_qty - self.counted_qty)


@dataclass(frozen=True)
class TrustChange:
    passed: bool
    shortfall_share: float      # missing units / reported units over the counted materials, 0..1
    trust_before: float
    trust_after: float
    status_before: str
    status_after: str
    checks: tuple[CountCheck, ...]


def check_count(material_id: str, reported: float, counted: float, policy: TrustPolicy) -> CountCheck:
    missing = reported - counted
    bad = missing > policy.tolerance_share * reported and missing >= policy.tolerance_units
    return CountCheck(material_id, reported, counted, bad)


def apply_audit(trust: float, status: str, counts: list[tuple[str, float, float]],
                policy: TrustPolicy = TrustPolicy()) -> TrustChange:
    """New trust and status after an audit of (material, reported, counted) triples."""
    checks = tuple(check_count(m, r, c, policy) for m, r, c in counts)
    reported = sum(c.reported_qty for c in checks)
    missing = sum(c.missing_qty for c in checks)
    share = missing / reported if reported > 0 else 0.0
    failed = any(c.discrepancy for c in checks)
    if failed:
        # Lose at least the tolerance share, so a failing audit always costs trust.
        after = trust * (1.0 - max(share, policy.tolerance_share))
        new_status = "suspended" if after < policy.suspend_below else status
    else:
        after = max(policy.suspend_below, min(1.0, trust + policy.pass_recovery))
        new_status = "active"
    after = round(min(1.0, max(0.0, after)), 6)
    return TrustChange(not failed, round(share, 6), trust, after, status, new_status, checks)
