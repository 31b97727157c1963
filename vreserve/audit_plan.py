"""Risk-weighted spot checks: which sites to audit next.

Weighted random draw without replacement (Efraimidis-Spirakis: key = u^(1/w), take the largest
keys), seeded so a plan can be reproduced and checked. Weights (docs/supervision.md, "Audit plan"):

    weight = floor + size + findings + history + suspended
    size      = contracted stock value of the site / the largest site's  (0..1)
    findings  = min(1, open unexplained stock findings / 3)               (0..1)
                (vreserve.reconcile: unexplained_change, pick_not_reflected; a critical finding
                counts 3. Changes explained by picks, deliveries or declared movements, stale
                readings and the old raw "jump" alerts weigh nothing: the sites that obeyed their
                dispatch orders are not the ones to inspect.)
    history   = min(2, past audit discrepancies)                           (0..2)
    suspended = 0.5 if the site is suspended (an audit is its way back)
    floor     = 0.05, so every site keeps a chance
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class SiteRisk:
    site_id: str
    grid_cell: str
    contracted_value: float     # sum of committed qty x call-off price (1 minor unit/unit if unpriced)
    open_findings: int          # open unexplained findings, a critical one counted 3
    past_discrepancies: int
    suspended: bool


@dataclass(frozen=True)
class WeightedSite:
    risk: SiteRisk
    weight: float
    reasons: tuple[str, ...]


FLOOR = 0.05


def weigh(risks: list[SiteRisk]) -> list[WeightedSite]:
    top = max((r.contracted_value for r in risks), default=0.0) or 1.0
    out = []
    for r in risks:
        size = r.contracted_value / top
        sensors = min(1.0, r.open_findings / 3.0)
        history = float(min(2, r.past_discrepancies))
        susp = 0.5 if r.suspended else 0.0
        reasons = [f"floor {FLOOR:g}"]
        if size > 0:
            reasons.append(f"contracted stock {size:.2f} of the largest site")
        if sensors > 0:
            reasons.append(f"open unexplained stock findings (weight {r.open_findings}) +{sensors:.2f}")
        if history > 0:
            reasons.append(f"{r.past_discrepancies} past discrepancy(ies) +{history:.0f}")
        if susp:
            reasons.append("suspended +0.5")
        out.append(WeightedSite(r, FLOOR + size + sensors + history + susp, tuple(reasons)))
    return out


def draw(weighted: list[WeightedSite], count: int, seed: int) -> list[WeightedSite]:
    """``count`` distinct sites, each drawn with probability proportional to weight among those left."""
    rng = random.Random(seed)
    keyed = []
    for w in sorted(weighted, key=lambda w: w.risk.site_id):
        u = rng.random() or 1e-300
        keyed.append((u ** (1.0 / w.weight), w.risk.site_id, w))
    keyed.sort(key=lambda k: (-k[0], k[1]))
    return [k[2] for k in keyed[:count]]
