"""Performance assessment of the sites that supplied an emergency, and of their owner kinds.

Per site (supply-leg orders of the emergency):

- fulfilment = delivered units / ordered units, per material (units differ between materials),
  then the mean over the site's materials (orders the dispatcher cancelled or closed without any
  delivery are not counted as ordered);
- response time = minutes from the order's creation to its first delivered status record (median),
  and on-time share = delivered orders handed over at the site (in_transit) within the contract's
  response time (transport is the carrier's part, not the owner's);
- data reliability = readings on time / readings expected: the site should report once per
  ``reading_interval_s`` during the emergency; a reading is on time when it reached the database
  within one interval of its timestamp;
- audit discrepancy share = failed audits / audits of the site, up to the emergency's end.

Score = weighted mean of the available parts (0.5 fulfilment, 0.2 on-time, 0.2 reliability,
0.1 x (1 - discrepancy share)); ranking by score, then site id. Owners are ranked by the mean
score of their sites; owner kinds and owners get the pooled figures of their sites.

Pure; shared by supervision (`vreserve assess`, its chart) and the HTTP API (`GET /assessments`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

WEIGHTS = {"fulfilment": 0.5, "on_time": 0.2, "reliability": 0.2, "audit": 0.1}


@dataclass
class SiteFacts:
    site_id: str
    owner_id: str
    owner_kind: str
    #: material -> [ordered units, delivered units] (in the material's unit)
    materials: dict[str, list[float]] = field(default_factory=dict)
    orders: int = 0
    response_minutes: list[float] = field(default_factory=list)
    on_time: int = 0
    delivered_orders: int = 0
    readings_on_time: int = 0
    readings_expected: float = 0.0
    audits: int = 0
    failed_audits: int = 0


@dataclass(frozen=True)
class SiteScore:
    rank: int
    site_id: str
    owner_id: str
    owner_kind: str
    orders: int
    fulfilment: float | None
    median_response_min: float | None
    on_time_share: float | None
    reliability: float | None
    discrepancy_share: float | None
    score: float


@dataclass(frozen=True)
class KindScore:
    owner_kind: str
    sites: int
    fulfilment: float | None
    median_response_min: float | None
    on_time_share: float | None
    reliability: float | None
    discrepancy_share: float | None


@dataclass(frozen=True)
class OwnerScore:
    """One owner's sites pooled; ``score`` is the mean of its sites' scores (0..1)."""

    rank: int
    owner_id: str
    owner_kind: str
    orders: int
    score: float
    sites: int
    fulfilment: float | None
    median_response_min: float | None
    on_time_share: float | None
    reliability: float | None
    discrepancy_share: float | None


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fulfilment(materials: dict[str, list[float]]) -> float | None:
    rates = [d / o for o, d in materials.values() if o > 0]
    return sum(rates) / len(rates) if rates else None


def score_site(f: SiteFacts) -> tuple[dict, float]:
    parts = {
        "fulfilment": fulfilment(f.materials),
        "on_time": _ratio(f.on_time, f.delivered_orders),
        "reliability": min(1.0, f.readings_on_time / f.readings_expected) if f.readings_expected >= 1 else None,
        "audit": (1.0 - f.failed_audits / f.audits) if f.audits else None,
    }
    avail = {k: v for k, v in parts.items() if v is not None}
    total_w = sum(WEIGHTS[k] for k in avail)
    score = sum(WEIGHTS[k] * v for k, v in avail.items()) / total_w if total_w else 0.0
    return parts, score


def assess(facts: Sequence[SiteFacts]) -> tuple[list[SiteScore], list[KindScore]]:
    scored = []
    for f in facts:
        parts, score = score_site(f)
        scored.append((f, parts, score))
    scored.sort(key=lambda t: (-t[2], t[0].site_id))
    sites = [SiteScore(
        rank=i + 1, site_id=f.site_id, owner_id=f.owner_id, owner_kind=f.owner_kind, orders=f.orders,
        fulfilment=p["fulfilment"],
        median_response_min=statistics.median(f.response_minutes) if f.response_minutes else None,
        on_time_share=p["on_time"], reliability=p["reliability"],
        discrepancy_share=(f.failed_audits / f.audits) if f.audits else None, score=round(s, 6),
    ) for i, (f, p, s) in enumerate(scored)]
    kinds = [KindScore(owner_kind=kind, **_pooled([f for f in facts if f.owner_kind == kind]))
             for kind in sorted({f.owner_kind for f in facts})]
    return sites, kinds


def _pooled(fs: Sequence[SiteFacts]) -> dict:
    """The figures of a group of sites, pooled (units and orders summed before dividing)."""
    resp = [m for f in fs for m in f.response_minutes]
    exp = sum(f.readings_expected for f in fs)
    return dict(
        sites=len(fs),
        fulfilment=fulfilment(_merge(f.materials for f in fs)),
        median_response_min=statistics.median(resp) if resp else None,
        on_time_share=_ratio(sum(f.on_time for f in fs), sum(f.delivered_orders for f in fs)),
        reliability=min(1.0, sum(f.readings_on_time for f in fs) / exp) if exp >= 1 else None,
        discrepancy_share=_ratio(sum(f.failed_audits for f in fs), sum(f.audits for f in fs)),
    )


def rank_owners(sites: Sequence[SiteScore], facts: Sequence[SiteFacts]) -> list[OwnerScore]:
    """Owners ranked by the mean score of their sites (then owner id), with their pooled figures."""
    by_owner: dict[str, list[SiteFacts]] = {}
    for f in facts:
        by_owner.setdefault(f.owner_id, []).append(f)
    scores: dict[str, list[float]] = {}
    for s in sites:
        scores.setdefault(s.owner_id, []).append(s.score)
    ordered = sorted(by_owner, key=lambda o: (-statistics.fmean(scores[o]), o))
    return [OwnerScore(rank=i + 1, owner_id=o, owner_kind=by_owner[o][0].owner_kind,
                       orders=sum(f.orders for f in by_owner[o]), score=round(statistics.fmean(scores[o]), 6),
                       **_pooled(by_owner[o])) for i, o in enumerate(ordered)]


def _merge(dicts) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for d in dicts:
        for m, (o, dl) in d.items():
            acc = out.setdefault(m, [0.0, 0.0])
            acc[0] += o
            acc[1] += dl
    return out


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def minutes(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
