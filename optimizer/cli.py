"""``vreserve plan`` and ``vreserve scenario ...``: the optimizer from the command line.

Heavy imports (numpy, cvxpy) happen inside the commands so ``vreserve --help`` stays fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vreserve.tables import table


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _budget_list(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"need comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise click.BadParameter("need one or more non-negative budgets")
    return vals


def _print_summary(res) -> None:
    s = res.summary
    click.echo(f"scenario {s.get('scenario')}: status {res.status.value} ({res.message})")
    click.echo(f"  solve {res.solve_seconds:.3f} s, build {res.build_seconds:.3f} s, compile {res.compile_seconds:.3f} s")
    if res.objective is not None:
        click.echo(f"  objective (sum theta x shortage) {res.objective:,.2f}, bound {res.bound:,.2f}, gap {res.gap:.3%}")
    elif res.bound is not None:
        click.echo(f"  no plan; proven lower bound {res.bound:,.2f}")
    if s.get("budget") is not None:
        spent = s.get("spent")
        click.echo(f"  budget {s['budget']:,.0f} currency units" + (f", spent {spent:,.0f} currency units" if spent is not None else ""))
    if "arcs_used" in s:
        click.echo(f"  arcs used (supply + delivery, per period) {s['arcs_used']} "
                   f"(primary stage {s.get('arcs_used_stage1')}, arc stage {s.get('arc_stage_status', 'skipped')})")
    rows = list(s["materials"].items()) + [("TOTAL", s["total"] | {"theta": None})]
    click.echo(table(
        ("material", "unit", "theta", "demand", "shortage", "shortage rate", "ideal rate"),
        [(mid, row["unit"], "" if row["theta"] is None else f"{row['theta']:.2f}", f"{row['demand']:,.0f}",
          "-" if row.get("shortage") is None else f"{row['shortage']:,.0f}",
          "-" if row.get("shortage_rate") is None else f"{row['shortage_rate']:.1%}", f"{row['ideal_shortage_rate']:.1%}")
         for mid, row in rows],
        right=[False, False] + [True] * 5))
    for msg in res.infeasibility:
        click.echo(f"  INFEASIBLE: {msg}")


@click.command("plan")
@click.argument("scenario")
@click.option("--budget", type=float, default=None, help="Override the scenario's budget (currency units).")
@click.option("--budgets", default=None, metavar="B1,B2,...",
              help="Budget study: plan at each budget, print shortage per material, write PNG plots.")
@click.option("--time-limit", "time_limit", type=float, default=60.0, show_default=True,
              help="Time limit of the primary solve, s.")
@click.option("--gap", type=float, default=1e-3, show_default=True, help="Relative MIP gap to prove.")
@click.option("--solver", default="HIGHS", show_default=True, help="MILP solver (HIGHS).")
@click.option("--theta", "theta_name", default=None, help="Shortage coefficient function (exp, quadratic, ...).")
@click.option("--arc-stage/--no-arc-stage", "arc_stage", default=False, show_default=True,
              help="Run the second stage that minimises used arcs (bounded by the primary solve's effort).")
@click.option("--arc-time-limit", "arc_time_limit", type=float, default=None,
              help="Time limit of the arc stage, s (default: twice the primary solve, at least 0.5 s).")
@click.option("--method", type=click.Choice(["lp-rens", "milp", "by-material"]), default="lp-rens", show_default=True,
              help="lp-rens: LP bound + rounding (default); milp: HiGHS on the full MILP; by-material: "
                   "decomposition for province-size scenarios (no min lot / delivery limits).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the plan (public JSON contract) here; '-' for stdout.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Where the budget study writes its PNGs.")
@click.pass_obj
def plan(settings, scenario: str, budget: float | None, budgets: str | None, time_limit: float, gap: float,
         solver: str, theta_name: str | None, arc_stage: bool, arc_time_limit: float | None, method: str, json_out: Path | None,
         plots_dir: Path) -> None:
    """Plan SCENARIO (a pack name such as wuhan or shanghai, or a YAML/JSON file)."""
    import dataclasses

    from optimizer import ScenarioError, load_scenario
    from optimizer.model import Planner

    try:
        sc = load_scenario(scenario)
        if budget is not None:
            sc = dataclasses.replace(sc, budget=budget)
        if theta_name is not None:
            from optimizer.urgency import theta_function
            theta_function(theta_name)
            sc = dataclasses.replace(sc, theta=theta_name)
    except ScenarioError as exc:
        raise click.ClickException(f"bad scenario: {exc}") from None
    opts = dict(time_limit_s=time_limit, gap=gap, solver=solver, prefer_fewer_arcs=arc_stage, arc_time_limit_s=arc_time_limit,
                method="lp-rens" if method == "by-material" else method)
    if budgets and method == "by-material":
        raise click.UsageError("--budgets works with lp-rens or milp")
    if budgets:
        from optimizer.study import plot, run_budgets, table as study_table
        runs = run_budgets(sc, _budget_list(budgets), progress=_err, **opts)
        click.echo(study_table(sc, runs))
        for p in plot(sc, runs, plots_dir):
            click.echo(f"wrote {p}")
        if json_out is not None:
            payload = {f"{b:g}": r.to_json_dict() for b, r in runs}
            _write_json(payload, json_out)
        if any(not r.has_plan for _, r in runs):
            sys.exit(2)
        return
    _err(f"planning {sc.name}: {len(sc.materials)} materials, {sc.periods} periods, {len(sc.supply_sites)} supply "
         f"sites, {len(sc.distribution_centres)} distribution centres, {len(sc.rescue_centres)} rescue centres ...")
    try:
        if method == "by-material":
            from optimizer.decompose import plan_by_material
            res = plan_by_material(sc, time_limit_s=time_limit, gap=gap, progress=_err)
        else:
            res = Planner(sc).solve(sc, **opts)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(res)
    if json_out is not None:
        _write_json(res.to_json_dict(), json_out)
    if not res.has_plan:
        sys.exit(2)


def _write_json(payload, path: Path) -> None:
    text = json.dumps(payload, indent=1)
    if str(path) == "-":
        click.echo(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    _err(f"wrote {path}")


@click.group("scenario")
def scenario() -> None:
    """Scenario files: generate synthetic ones, validate, list the packs."""


@scenario.command("generate")
@click.option("--size", type=click.Choice(["paper", "city", "province"]), default="city", show_default=True,
              help="paper: M4 T10 W2 J3 K5; city: M10 T10 W50 J10 K100; province: M20 T14 W500 J40 K400.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--budget-fraction", type=float, default=0.8, show_default=True,
              help="Budget as a fraction of the cost of all supply (0 or less: no budget).")
@click.option("--max-deliveries", type=int, default=None, help="Max rescue centres a centre serves per period.")
@click.option("--min-lot", type=float, default=None, help="Min units on a used delivery arc.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (.json or .yaml); default: JSON on stdout.")
def generate_cmd(size: str, seed: int, budget_fraction: float, max_deliveries: int | None, min_lot: float | None,
                 out: Path | None) -> None:
    """Generate a synthetic scenario (sparse arcs: 2 nearest centres per site, 3 per rescue centre)."""
    from optimizer.generate import generate

    sc = generate(size, seed, budget_fraction=budget_fraction if budget_fraction > 0 else None,
                  max_deliveries=max_deliveries, min_lot=min_lot)
    if out is None:
        click.echo(json.dumps(sc))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".yaml", ".yml"):
        import yaml
        out.write_text(yaml.safe_dump(sc, sort_keys=False, default_flow_style=None, width=120), encoding="utf-8")
    else:
        out.write_text(json.dumps(sc), encoding="utf-8")
    _err(f"wrote {out} ({size}, seed {seed})")


@scenario.command("validate")
@click.argument("source")
def validate_cmd(source: str) -> None:
    """Check a scenario file or pack and print its shape (or the first error)."""
    from optimizer import ScenarioError, load_scenario

    try:
        sc = load_scenario(source)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{sc.name}: ok - {len(sc.materials)} materials, {sc.periods} periods, {len(sc.supply_sites)} supply "
               f"sites, {len(sc.distribution_centres)} distribution centres, {len(sc.rescue_centres)} rescue centres, "
               f"{len(sc.supply_arcs())} supply arcs, {len(sc.delivery_arcs())} delivery arcs")


@scenario.command("list")
def list_cmd() -> None:
    """List the bundled scenario packs."""
    from optimizer.scenario import known_packs
    for name in known_packs():
        click.echo(name)


commands = [plan, scenario]
