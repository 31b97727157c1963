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
0.1 x (1 - discrepancy share)); ranking by score, then site id.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
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
    kinds = []
    for kind in sorted({f.owner_kind for f in facts}):
        fs = [f for f in facts if f.owner_kind == kind]
        resp = [m for f in fs for m in f.response_minutes]
        exp = sum(f.readings_expected for f in fs)
        kinds.append(KindScore(
            owner_kind=kind, sites=len(fs),
            fulfilment=fulfilment(_merge(f.materials for f in fs)),
            median_response_min=statistics.median(resp) if resp else None,
            on_time_share=_ratio(sum(f.on_time for f in fs), sum(f.delivered_orders for f in fs)),
            reliability=min(1.0, sum(f.readings_on_time for f in fs) / exp) if exp >= 1 else None,
            discrepancy_share=_ratio(sum(f.failed_audits for f in fs), sum(f.audits for f in fs)),
        ))
    return sites, kinds


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


def chart(sites: Sequence[SiteScore], kinds: Sequence[KindScore], path: Path, title: str, top: int = 20) -> Path:
    """Two panels: owner kinds (fulfilment, on-time, reliability) and the ranked sites' scores."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.1, 1.1]})
    names = [k.owner_kind for k in kinds]
    x = np.arange(len(names))
    series = [("fulfilment", [k.fulfilment for k in kinds], "#2a7ab9"),
              ("on-time delivery", [k.on_time_share for k in kinds], "#f0a030"),
              ("data reliability", [k.reliability for k in kinds], "#4caf50")]
    width = 0.26
    for i, (label, vals, color) in enumerate(series):
        heights = [100 * v if v is not None else 0 for v in vals]
        bars = ax1.bar(x + (i - 1) * width, heights, width, label=label, color=color)
        for b, v in zip(bars, vals):
            ax1.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, "n/a" if v is None else f"{100 * v:.0f}",
                     ha="center", va="bottom", fontsize=7)
    ax1.set_xticks(x, [f"{k.owner_kind}\n{k.sites} site(s)\n"
                       + ("no delivery" if k.median_response_min is None else f"median\n{k.median_response_min:.0f} min")
                       for k in kinds], fontsize=8)
    ax1.set_ylim(0, 115)
    ax1.set_ylabel("%")
    ax1.set_title("By owner kind")
    ax1.legend(loc="upper center", ncol=3, fontsize=8)
    if len(sites) > top:  # the best and the worst: the ones a supervisor acts on
        shown = list(sites[: top // 2]) + list(sites[-(top - top // 2):])
        what = f"best {top // 2} and worst {top - top // 2} of {len(sites)}"
    else:
        shown = list(sites)
        what = f"all {len(sites)}"
    labels = [f"#{s.rank} {s.site_id} ({s.owner_kind})" for s in shown][::-1]
    scores = [100 * s.score for s in shown][::-1]
    colors = ["#c0392b" if s.score < 0.5 else "#2a7ab9" for s in shown][::-1]
    bars = ax2.barh(labels, scores, color=colors)
    for b, v in zip(bars, scores):
        ax2.text(min(v + 1, 92), b.get_y() + b.get_height() / 2, f"{v:.1f}", va="center", fontsize=7)
    ax2.set_xlim(0, 100)
    ax2.set_xlabel("score (0-100: 50% fulfilment, 20% on-time, 20% reliability, 10% audits)")
    ax2.set_title(f"Site ranking ({what})")
    ax2.tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
