"""``vreserve bench optimizer --anytime``: gap over time with delivery limits, ours against HiGHS on the
full MILP in the same run (issue 19).

Sizes (``vreserve scenario generate`` with these options, seeds printed):
- city-limits: city, ``--max-deliveries 2 --min-lot 20``; target 1 % proven gap within 10 s;
- province-limits: province, ``--max-deliveries 3 --min-lot 20``; target 1 % within 60 s;
- province: province without limits; target 1 % within 10 s;
and at every size a checked plan (with its proven gap) within 5 s.

Ours is ``optimizer.anytime.plan_anytime`` (every plan it keeps passed ``optimizer.check``). HiGHS runs
on the full MILP (compiled by CVXPY, the same model) in a CHILD process, killed at the limit + 30 s
(HiGHS overran its limit in presolve at province size before); its incumbents and dual bound are
recorded through HiGHS callbacks, and its final plan is checked too. Times count from the loaded
scenario: model build and compile are part of the time to a plan, for both.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import click

SIZES = {
    "city-limits": ("city", 2, 20.0),
    "province-limits": ("province", 3, 20.0),
    "province": ("province", None, None),
}
TARGET = {"city-limits": (0.01, 10.0), "province-limits": (0.01, 60.0), "province": (0.01, 10.0)}
FIRST_PLAN_S = 5.0
CHECKPOINTS = (5.0, 10.0, 30.0, 60.0)


def scenario_of(size: str, seed: int) -> dict:
    from optimizer.generate import generate

    base, f, lot = SIZES[size]
    return generate(base, seed, max_deliveries=f, min_lot=lot)


def gap_at(events: list[dict], t: float) -> float | None:
    """Best proven gap known at time t: the best objective and the best bound reported by then."""
    objs = [e["objective"] for e in events if e["t"] <= t and e.get("objective") is not None]
    bounds = [e["bound"] for e in events if e["t"] <= t and e.get("bound") is not None]
    if not objs:
        return None
    obj, bound = min(objs), max(bounds) if bounds else 0.0
    return 0.0 if obj <= 1e-9 else max(0.0, (obj - min(bound, obj)) / obj)


def run_ours(size: str, seed: int, limit_s: float) -> dict[str, Any]:
    from optimizer import load_scenario
    from optimizer.anytime import plan_anytime
    from optimizer.check import check_plan

    sc = load_scenario(scenario_of(size, seed))
    events: list[dict] = []
    t0 = time.perf_counter()
    res = plan_anytime(sc, budget_s=limit_s, gap=TARGET[size][0],
                       on_plan=lambda r, s: events.append({"t": s, "objective": r.objective, "bound": r.bound}))
    wall = time.perf_counter() - t0
    if res.has_plan:
        events.append({"t": wall, "objective": res.objective, "bound": res.bound})
    chk = check_plan(sc, res) if res.has_plan else None
    return {"events": events, "objective": res.objective, "bound": res.bound, "wall": wall,
            "check": "-" if chk is None else ("passed" if chk.ok else f"FAILED: {chk.violations[0]}"),
            "stages": [(e["stage"], e["seconds"]) for e in res.summary.get("trajectory", [])],
            "status": _work_status(res.summary)}


def _work_status(summary: dict) -> str:
    """What decided where our plan stopped: its work limits (reproducible) or the clock (safety net)."""
    w = summary.get("work_limits") or {}
    limits = f"work limits: {w.get('rounds')} rounds, {w.get('mip_nodes')} nodes/MILP, materials {w.get('materials')}"
    stops = summary.get("clock_stops") or []
    return limits + ("; STOPPED BY THE CLOCK in " + ", ".join(stops) if stops else "; the work limits decided")


def child_highs(size: str, seed: int, limit_s: float) -> None:
    """In the child process: HiGHS on the full MILP, one JSON line per event, then the checked result."""
    import numpy as np

    from optimizer import load_scenario
    from optimizer.check import check_plan
    from optimizer.index import numbers_of
    from optimizer.model import Planner
    from optimizer.readout import Timing, plan_result, primary_objective
    from optimizer.solver import HighsSolver
    from optimizer.result import SolveStatus
    from optimizer.urgency import urgency

    sc = load_scenario(scenario_of(size, seed))
    t0 = time.perf_counter()

    def emit(**kw):
        print(json.dumps({"t": time.perf_counter() - t0, **kw}), flush=True)

    planner = Planner(sc)
    n = numbers_of(sc)
    form = planner.formulation
    form.set_numbers(n)
    problem = form.stage1.compile()
    emit(kind="compiled")

    def on_event(kind, objective, bound):
        ok = objective is not None and np.isfinite(objective) and abs(objective) < 1e30
        # shortage is never negative: a dual bound below 0 (before the root LP) is reported as 0
        emit(kind=kind, objective=float(objective) if ok and kind == "improving" else None,
             bound=max(float(bound), 0.0) if bound is not None and np.isfinite(bound) and abs(bound) < 1e30 else None)

    left = max(limit_s - (time.perf_counter() - t0), 0.1)
    run = HighsSolver().solve(problem.data, time_limit_s=left, gap=TARGET[size][0], on_event=on_event)
    check, obj, bound = "-", None, run.bound
    if run.has_solution:
        vals = problem.split(run.values)
        xv, yv = np.rint(vals[form.x.id]), np.rint(vals[form.y.id])
        obj = primary_objective(planner.index, n, yv)
        res = plan_result(sc, n, planner.index, urgency(sc.materials, sc.theta), status=SolveStatus.FEASIBLE,
                          objective=obj, bound=bound or 0.0, gap=None, timing=Timing(run.seconds, 0.0, 0.0),
                          xv=xv, yv=yv, extra={}, message="")
        chk = check_plan(sc, res)
        check = "passed" if chk.ok else f"FAILED: {chk.violations[0]}"
    emit(kind="final", status=run.status.value, objective=obj,
         bound=None if bound is None else max(bound, 0.0), check=check)


def run_highs(size: str, seed: int, limit_s: float, grace_s: float = 30.0) -> dict[str, Any]:
    cmd = [sys.executable, "-c", f"from bench.optimizer_anytime import child_highs; "
                                 f"child_highs({size!r}, {seed}, {limit_s})"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    events: list[dict] = []
    final: dict = {}
    killed = False
    try:
        out, _ = proc.communicate(timeout=limit_s + grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        killed = True
    for line in (out or "").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("kind") == "final":
            final = e
        elif e.get("kind") in ("improving", "progress"):
            events.append(e)
    return {"events": events, "objective": final.get("objective"), "bound": final.get("bound"),
            "wall": time.perf_counter() - t0, "check": final.get("check", "-"),
            "status": "killed at limit + 30 s" if killed else final.get("status", "no result")}


def first_plan(events: list[dict]) -> float | None:
    ts = [e["t"] for e in events if e.get("objective") is not None]
    return min(ts) if ts else None


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def main(*, sizes: list[str], seeds: int, limit_s: float, baseline: bool = True) -> list[dict]:
    load0 = os.getloadavg()
    click.echo(f"anytime optimizer benchmark, limit {limit_s:g} s; load average at start "
               f"{load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1/5/15 min) on 2 shared cores")
    cp = "".join(f"{'gap@' + format(c, 'g') + 's':>10}" for c in CHECKPOINTS)
    click.echo(f"{'size':<16}{'seed':>5} {'who':<6}{'first plan s':>13}{cp}{'objective':>16}{'bound':>16}"
               f"{'wall s':>8}  check / status")
    rows = []
    for size in sizes:
        for seed in range(1, seeds + 1):
            click.echo(f"  ... {size} seed {seed}", err=True)
            runs = {"ours": run_ours(size, seed, limit_s)}
            if baseline:
                runs["HiGHS"] = run_highs(size, seed, limit_s)
            for who, r in runs.items():
                gaps = [gap_at(r["events"], c) if c <= limit_s + 1e-9 else None for c in CHECKPOINTS]
                fp = first_plan(r["events"])
                rows.append({"size": size, "seed": seed, "who": who, "first_plan_s": fp, "gaps": gaps, **r})
                click.echo(f"{size:<16}{seed:>5} {who:<6}{_f(fp, '.2f'):>13}"
                           + "".join(f"{_f(g, '.2%'):>10}" for g in gaps)
                           + f"{_f(r['objective'], ',.1f'):>16}{_f(r['bound'], ',.1f'):>16}{r['wall']:>8.1f}  "
                           + f"{r['check']}" + (f" / {r['status']}" if "status" in r else ""))
    load1 = os.getloadavg()
    click.echo(f"load average at the end {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f}")
    for size in sizes:
        target_gap, target_s = TARGET[size]
        ours = [r for r in rows if r["size"] == size and r["who"] == "ours"]
        met = [r for r in ours if (gap_at(r["events"], target_s) or 1.0) <= target_gap + 1e-12]
        first = [r for r in ours if r["first_plan_s"] is not None and r["first_plan_s"] <= FIRST_PLAN_S]
        click.echo(f"target {size}: proven gap <= {target_gap:.0%} within {target_s:g} s: met in {len(met)}/{len(ours)}"
                   f"; a checked plan within {FIRST_PLAN_S:g} s: {len(first)}/{len(ours)}")
    return rows


@click.command("optimizer-anytime")
@click.option("--sizes", default="city-limits,province-limits,province", show_default=True)
@click.option("--seeds", type=int, default=1, show_default=True)
@click.option("--time-limit", "limit_s", type=float, default=60.0, show_default=True)
@click.option("--no-baseline", is_flag=True, help="Skip HiGHS on the full MILP.")
def command(sizes: str, seeds: int, limit_s: float, no_baseline: bool) -> None:
    """Gap over time with delivery limits: the anytime planner against HiGHS on the full MILP."""
    chosen = [s.strip() for s in sizes.split(",") if s.strip()]
    for s in chosen:
        if s not in SIZES:
            raise click.BadParameter(f"unknown size {s!r} (known: {', '.join(SIZES)})")
    main(sizes=chosen, seeds=seeds, limit_s=limit_s, baseline=not no_baseline)
