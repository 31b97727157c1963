"""Performance assessment of the sites that supplied an emergency: the scoring is in
vreserve/assessment.py (shared with the HTTP API); this module draws its chart."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vreserve.assessment import KindScore, SiteScore


def chart(sites: Sequence[SiteScore], kinds: Sequence[KindScore], path: Path, title: str, top: int = 20) -> Path:
    """Two panels: owner kinds (fulfilment, on-time, reliability) and the ranked sites' scores."""
    # lazy: matplotlib costs ~1.5 s to import; only the chart needs it
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
