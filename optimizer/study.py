"""The budget study: the same scenario planned at several budgets, printed and plotted.

Plots (PNG): ideal vs actual shortage rate per material (one bar per budget), and shortage per
material vs budget (one line per material, shortage as % of the material's demand so that boxes,
bottles, pieces and kg share an axis; absolute numbers are in the printed table).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from optimizer.model import Planner
from optimizer.result import PlanResult
from optimizer.scenario import Scenario
from vreserve.tables import table as table_text


def run_budgets(sc: Scenario, budgets: list[float], *, progress: Callable[[str], None] = lambda s: None,
                **solve_opts) -> list[tuple[float, PlanResult]]:
    """Plan ``sc`` once per budget with one compiled model (only the budget parameter changes)."""
    out = []
    planner: Planner | None = None
    for i, b in enumerate(budgets, 1):
        variant = dataclasses.replace(sc, budget=float(b))
        if planner is None:
            planner = Planner(variant)
        progress(f"[{i}/{len(budgets)}] budget {b:,.0f}: solving ...")
        res = planner.solve(variant, **solve_opts)
        progress(f"[{i}/{len(budgets)}] budget {b:,.0f}: {res.status.value}, objective "
                 f"{'-' if res.objective is None else f'{res.objective:,.1f}'}, {res.solve_seconds:.2f} s")
        out.append((float(b), res))
    return out


def table(sc: Scenario, runs: list[tuple[float, PlanResult]]) -> str:
    """Shortage per material at each budget (the scenario's money is in its own currency units)."""
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for b, res in runs:
        if not res.has_plan:
            notes.append(f"budget {b:,.0f} currency units: {res.status.value}: {res.message}")
            continue
        spent = f"{res.summary.get('spent', 0):,.0f}"
        for mid, row in res.summary["materials"].items():
            rows.append((f"{b:,.0f}", mid, row["unit"], f"{row['demand']:,.0f}", f"{row['shortage']:,.0f}",
                         f"{row['shortage_rate']:.1%}", f"{row['ideal_shortage_rate']:.1%}", spent))
        tot = res.summary["total"]
        rows.append((f"{b:,.0f}", "TOTAL", "units", f"{tot['demand']:,.0f}", f"{tot['shortage']:,.0f}",
                     f"{tot['shortage_rate']:.1%}", f"{tot['ideal_shortage_rate']:.1%}", spent))
        notes.append(f"budget {b:,.0f} currency units: objective {res.objective:,.1f} "
                     f"({res.status.value}, gap {res.gap:.2e})")
    out = table_text(("budget, currency units", "material", "unit", "demand", "shortage", "shortage rate",
                      "ideal rate", "spent, currency units"), rows, right=[True, False, False] + [True] * 5)
    return "\n".join([out, *notes])


def plot(sc: Scenario, runs: list[tuple[float, PlanResult]], out_dir: Path) -> list[Path]:
    # lazy: matplotlib costs ~1.5 s to import; only the chart needs it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    ok = [(b, r) for b, r in runs if r.has_plan]
    if not ok:
        return []
    mids = list(ok[0][1].summary["materials"])
    thetas = {m: ok[0][1].urgency.coefficients[m] for m in mids}
    order = sorted(mids, key=lambda m: -thetas[m])  # most urgent first
    labels = [f"{m}\n(theta {thetas[m]:.2f})" for m in order]
    paths = []

    fig, ax = plt.subplots(figsize=(9, 5))
    n = len(ok) + 1
    width = 0.8 / n
    xs = np.arange(len(order))
    ideal = [ok[0][1].summary["materials"][m]["ideal_shortage_rate"] * 100 for m in order]
    ax.bar(xs - 0.4 + width / 2, ideal, width, label="ideal (all available units used)", color="0.6")
    for i, (b, r) in enumerate(ok, 1):
        vals = [r.summary["materials"][m]["shortage_rate"] * 100 for m in order]
        ax.bar(xs - 0.4 + width * (i + 0.5), vals, width, label=f"plan, budget {b / 1e6:g} M")
    ax.set_xticks(xs, labels)
    ax.set_ylabel("shortage rate (% of the material's demand)")
    ax.set_title(f"{sc.name}: ideal vs planned shortage rate per material (most urgent left)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = out_dir / f"{sc.name}_shortage_rate_ideal_vs_actual.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(9, 5))
    budgets = [b / 1e6 for b, _ in ok]
    for m in order:
        vals = [r.summary["materials"][m]["shortage_rate"] * 100 for _, r in ok]
        ax.plot(budgets, vals, marker="o", label=f"{m} (theta {thetas[m]:.2f})")
    ax.set_xlabel("budget (million currency units)")
    ax.set_ylabel("shortage (% of the material's demand)")
    ax.set_title(f"{sc.name}: shortage per material vs budget")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / f"{sc.name}_shortage_vs_budget.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
