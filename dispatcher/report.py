"""The emergency's final report: per material demand, delivered, shortage and shortage rate (with
units), per period the plan's status and solve time; written as JSON and a PNG chart."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dispatcher import book
from dispatcher.live import horizon_demand, in_registry_units
from optimizer import urgency
from vreserve.tables import table


def emergency_report(conn, emergency_id: str, base: dict) -> dict[str, Any]:
    """Figures from the database (what really happened), demand from the emergency's demand file."""
    facts = book.report_facts(conn, emergency_id, [m["id"] for m in base["materials"]])
    return build_report(facts, base)


def build_report(facts: book.ReportFacts, base: dict) -> dict[str, Any]:
    """The report from what the database holds (pure): per material demand, delivered, shortage
    and the ideal rate, per period the plan's figures, orders by status and failure reasons."""
    # in the registry's units, as the plans and orders count (dispatcher.live.in_registry_units)
    base, _notes = in_registry_units(base, facts.material_units)
    demand = horizon_demand(base, facts.periods, facts.demand_scale, facts.demand_overrides)
    first = facts.plans[0][5] if facts.plans else {}
    plans = [{"period": period, "status": status, "objective": objective, "gap": gap,
              "solve_seconds": solve_s, "timings_s": summary.get("timings_s", {}),
              "orders": summary.get("orders"), "superseded": summary.get("cancelled"),
              "supply_nodes": summary.get("supply_nodes"), "published": published is not None,
              "message": summary.get("message", "")}
             for (period, status, objective, gap, solve_s, summary, published) in facts.plans]
    return {"emergency_id": facts.emergency_id, "region": facts.region, "demand_source": facts.demand_source,
            "demand_scale": facts.demand_scale, "periods": facts.periods, "declared_at": str(facts.declared_at),
            "ended_at": str(facts.ended_at) if facts.ended_at else None,
            "materials": material_rows(facts, base, demand, first), "plans": plans,
            "orders_by_status": facts.orders_by_status, "failure_reasons": facts.failure_reasons}


def material_rows(facts: book.ReportFacts, base: dict, demand: dict, first: dict) -> dict[str, dict]:
    """Per material, in its unit: demand, delivered, shortage, the ideal rate and the picks."""
    mats = [m["id"] for m in base["materials"]]
    units = {m["id"]: m.get("unit", "units") for m in base["materials"]}
    usable = {m: sum(max(0.0, float((dc.get("initial") or {}).get(m, 0)) - float((dc.get("safety_stock") or {}).get(m, 0)))
                     for dc in base["distribution_centres"]) for m in mats}
    try:  # the weight each material's shortage has in the plan (urgency by entropy weight)
        thetas = urgency(base["materials"], base.get("theta", "exp")).coefficients
    except Exception:  # the report never fails on it; the column shows "-"
        thetas = {}
    materials = {}
    for m in mats:
        d = sum(sum(v) for (rc, mm), v in demand.items() if mm == m)
        got = facts.delivered.get(m, 0.0)
        picked, ordered = facts.picked.get(m, 0.0), facts.ordered.get(m, 0.0)
        short = max(0.0, d - got)
        # ideal (as the optimizer's summary defines it): every unit there was used, i.e. the
        # centres' usable stock + what the live registry offered at the first plan
        live = float(((first.get("materials") or {}).get(m) or {}).get("available", 0.0))
        ideal = max(0.0, d - usable[m] - live) / d if d > 0 else 0.0
        materials[m] = {"unit": units[m], "demand": round(d, 3), "delivered": round(got, 3),
                        "shortage": round(short, 3), "shortage_rate": (short / d) if d > 0 else 0.0,
                        "ideal_shortage_rate": ideal, "live_supply_at_declare": live,
                        "centres_usable_stock": usable[m], "theta": thetas.get(m),
                        "picked_at_sites": round(picked, 3), "short_picks": round(ordered - picked, 3)}
    return materials


def print_report(report: dict, say=print) -> None:
    """The report as tables: per material (in its unit), then per period."""
    say(f"== emergency {report['emergency_id']} in region {report['region']} "
        f"({report['periods']} periods, demand from {report['demand_source']} x {report['demand_scale']:g})")
    materials = [[m, r["unit"], "-" if r.get("theta") is None else f"{r['theta']:.2f}", f"{r['demand']:,.0f}",
                  f"{r['delivered']:,.0f}", f"{r['shortage']:,.0f}", f"{r['shortage_rate']:.1%}",
                  f"{r.get('ideal_shortage_rate', 0):.1%}", f"{r['picked_at_sites']:,.0f}"]
                 for m, r in report["materials"].items()]
    for line in table(["material", "unit", "urgency", "demand", "delivered", "shortage", "rate", "ideal",
                       "picked at sites"], materials).splitlines():
        say(line)
    say("(units of each material; rate = shortage / demand over the emergency; ideal = the rate if every unit "
        "of the centres' usable stock and of the live supply at the declaration reached a rescue centre)")
    periods = [[p["period"], p["status"], f"{p['solve_seconds'] or 0:,.2f}", f"{p['timings_s'].get('snapshot', 0):,.2f}",
                f"{p['timings_s'].get('build', 0):,.3f}", "-" if p["gap"] is None else format(p["gap"], ".2%"),
                f"{p['orders'] or 0:,}", f"{p['superseded'] or 0:,}", f"{p['supply_nodes'] or 0:,}"]
               for p in report["plans"]]
    for line in table(["period", "status", "solve, s", "snapshot, s", "build, s", "gap", "orders", "superseded",
                       "supply nodes"], periods).splitlines():
        say(line)
    say("orders by status: " + ", ".join(f"{k} {v:,} orders" for k, v in sorted(report["orders_by_status"].items())))
    if report["failure_reasons"]:
        say("failure reasons: " + "; ".join(report["failure_reasons"]))


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    # lazy: matplotlib is heavy, and its non-GUI backend must be chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    mats = list(report["materials"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    rates = [100 * report["materials"][m]["shortage_rate"] for m in mats]
    served = [100 - r for r in rates]
    ax1.bar(mats, served, color="#3a7d44", label="delivered")
    ax1.bar(mats, rates, bottom=served, color="#c0392b", label="shortage")
    for i, m in enumerate(mats):
        r = report["materials"][m]
        ax1.text(i, 50, f"{r['delivered']:,.0f} /\n{r['demand']:,.0f}\n{r['unit']}", ha="center", va="center",
                 color="white", fontsize=8)
    for i, m in enumerate(mats):
        ideal = report["materials"][m].get("ideal_shortage_rate")
        if ideal is not None:
            ax1.hlines(100 - 100 * ideal, i - 0.4, i + 0.4, colors="black", linestyles="--",
                       label="ideal shortage (all stock used)" if i == 0 else None)
    ax1.set_xticks(range(len(mats)))
    ax1.set_xticklabels([m + ("" if report["materials"][m].get("theta") is None
                              else f"\nurgency weight {report['materials'][m]['theta']:.2f}") for m in mats],
                        fontsize=8)
    ax1.set_ylabel("share of demand over the emergency, %")
    ax1.set_ylim(0, 100)
    ax1.set_title("Delivered vs shortage per material")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8)
    periods = [p["period"] for p in report["plans"]]
    ax2.bar(periods, [p["solve_seconds"] or 0 for p in report["plans"]], color="#2c6fbb", label="solve time, s")
    ax2.set_xlabel("period")
    ax2.set_ylabel("solve time, s")
    ax2.set_xticks(periods)
    for p in report["plans"]:
        ax2.text(p["period"], (p["solve_seconds"] or 0), p["status"], ha="center", va="bottom", fontsize=8)
    ax3 = ax2.twinx()
    ax3.plot(periods, [p["orders"] or 0 for p in report["plans"]], "o-", color="#e67e22", label="orders")
    ax3.set_ylabel("orders published")
    ax2.set_title("Per period: plan status, solve time, orders")
    fig.suptitle(f"vreserve: emergency {report['emergency_id']} ({report['region']})")
    fig.tight_layout()
    png_path = out_dir / "report.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
