"""``vreserve bench dispatcher``: emergency declared -> first orders on the topic.

For each case, in a private database and topic prefix on the real services: a registry is stored
with live stock (``stock_latest``) for every (site, material), the dispatcher runs in this process
(the same code as ``vreserve dispatch run``), a declare event is published, and the clock runs until
the first order record can be read back from the dispatch-orders topic by an independent consumer.
The split (snapshot, build, solve, persist, publish) comes from the dispatcher's own timings. The
second period's re-plan reuses the compiled problem (CVXPY parameters); its time against the first
plan's is the ratio measured in the same run.

Cases:
* ``wuhan``: the source's scale - the wuhan pack (3 distribution centres, 5 rescue centres,
  4 materials, 10 periods) with 2 depots + 1 crowd cell as live supply nodes (the source has 2
  supply sites);
* ``wuhan-live``: the wuhan pack on the demo's 300-site registry (~100 supply nodes);
* ``city``: the optimizer's city size (``vreserve scenario generate --size city``: 10 materials,
  10 periods, 10 centres, 100 rescue centres) with 50 live supply nodes (8 depots + 42 crowd cells
  of 250 sites), stock sized to ~90 % of each material's horizon demand.
Targets: under 5 s at the source's scale, under 60 s at city size.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import click
from bench.procs import services_up

TARGETS_S = {"wuhan": 5.0, "wuhan-live": 5.0, "city": 60.0}


def _private(settings):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    run = uuid.uuid4().hex[:8]
    name = f"vr_bench_{run}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s = settings.with_(pg_dsn=make_conninfo(**{**conninfo_to_dict(settings.pg_dsn), "dbname": name}),
                       topic_prefix=f"bench{run}.")
    migrate(s.pg_dsn)
    ensure_topics(s)
    return s, name


def _drop(settings, base_settings, name: str) -> None:
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from vreserve.db import connect

    with connect(base_settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        admin.delete_topics([t for t in admin.list_topics() if t.startswith(settings.topic_prefix)])
    finally:
        admin.close()


def _store_live_registry(conn, registry, stock_factor: dict[str, float] | None = None) -> int:
    """Store the registry and give every (site, material) a live reading equal to its commitment."""
    from vreserve.registry_store import store_registry

    store_registry(conn, registry, today=date.today())
    if stock_factor:
        for m, f in stock_factor.items():
            conn.execute("UPDATE contracts SET committed_qty = greatest(1, round(committed_qty * %s))"
                         " WHERE material_id = %s", (f, m))
    conn.execute(
        "INSERT INTO stock_latest (site_id, material_id, qty, unit, ts, seq)"
        " SELECT c.site_id, c.material_id, c.committed_qty, m.unit, now(), 1"
        " FROM contracts c JOIN materials m USING (material_id)"
        " ON CONFLICT (site_id, material_id) DO UPDATE SET qty = EXCLUDED.qty, ts = EXCLUDED.ts")
    return conn.execute("SELECT count(*) FROM stock_latest").fetchone()[0]


def _case_setup(case: str, conn, tmp: Path) -> tuple[str, str]:
    """Registry + demand source for a case; returns (region, demand source)."""
    from vreserve.registry import Material
    from vreserve.registry_generate import generate_registry

    if case == "wuhan":
        reg = generate_registry(60, seed=3, region="wuhan", centralized_share=0.034, grid=(1, 1))
        _store_live_registry(conn, reg)
        return "wuhan", "wuhan"
    if case == "wuhan-live":
        reg = generate_registry(300, seed=7, region="wuhan")
        _store_live_registry(conn, reg)
        return "wuhan", "wuhan"
    from optimizer.generate import generate

    scenario = generate("city", seed=1)
    path = tmp / "city.json"
    path.write_text(json.dumps(scenario))
    mats = [m["id"] for m in scenario["materials"]]
    catalogue = [Material(m["id"], f"city material {m['id']}", m.get("unit", "units"), "medical", True,
                          int(m.get("price", 1) * 100)) for m in scenario["materials"]]
    reg = generate_registry(250, seed=5, region="city", grid=(7, 6), materials=catalogue,
                            materials_per_site=len(mats), required_materials=mats)
    # size the live stock to ~90 % of each material's demand over the horizon
    demand = {m: sum(sum(rc["demand"].get(m, [0])) if isinstance(rc["demand"].get(m), list)
                     else float(rc["demand"].get(m, 0)) * scenario["periods"]
                     for rc in scenario["rescue_centres"]) for m in mats}
    held = {m: sum(s.materials[m].contracted_qty for s in reg.sites.values() if m in s.materials) for m in mats}
    factor = {m: 0.9 * demand[m] / held[m] for m in mats if held[m] > 0}
    _store_live_registry(conn, reg, factor)
    return "city", str(path)


def run_case(settings, case: str, period_length_s: float, say) -> dict:
    from dispatcher.operator import declare_event, publish_mode
    from dispatcher.planning import PlannerCache
    from dispatcher.service import Dispatcher
    from kafka import TopicPartition
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from vreserve import topics
    from vreserve.db import connect

    private, dbname = _private(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp, connect(private.pg_dsn, autocommit=True) as conn:
            t_setup = time.perf_counter()
            region, source = _case_setup(case, conn, Path(tmp))
            sites = conn.execute("SELECT count(*) FROM sites").fetchone()[0]
            say(f"{case}: registry of {sites} sites with live stock stored in {time.perf_counter() - t_setup:.1f} s")
            # independent reader of the orders topic, positioned before the declare
            reader = kafka_clients.consumer(private, ADMIN, group_id=None, enable_auto_commit=False)
            name = private.topic(topics.DISPATCH_ORDERS)
            # the partition count we created (a client's metadata can lag a topic created just now)
            parts = [TopicPartition(name, p) for p in range(private.partitions)]
            reader.assign(parts)
            reader.seek_to_beginning(*parts)
            reader.poll(timeout_ms=200)
            dispatcher = Dispatcher(private, cache=PlannerCache(time_limit_s=120.0), say=lambda m: None)
            stop = threading.Event()
            th = threading.Thread(target=dispatcher.run, kwargs={"until": stop.is_set}, daemon=True)
            th.start()
            time.sleep(3.0)  # the dispatcher is up and assigned; we time declare -> first order
            event = declare_event(region, (), source, 2 if case != "city" else 2, period_length_s,
                                  "benchmark", who="bench")
            t0 = time.perf_counter()
            publish_mode(private, event.to_json(), region)
            first_s = None
            n_orders = 0
            deadline = t0 + 300
            while time.perf_counter() < deadline:
                for _tp, recs in reader.poll(timeout_ms=50).items():
                    for r in recs:
                        if json.loads(r.value).get("kind") == "order":
                            n_orders += 1
                            if first_s is None:
                                first_s = time.perf_counter() - t0
                if first_s is not None and len(dispatcher.plan_timings) >= 2:
                    break
                if not th.is_alive():
                    raise click.ClickException(f"{case}: the dispatcher stopped")
            stop.set()
            th.join(30)
            reader.close()
            if first_s is None:
                raise click.ClickException(f"{case}: no order within 300 s")
            plans = dispatcher.plan_timings
            return {"case": case, "sites": sites, "first_order_s": first_s, "target_s": TARGETS_S[case],
                    "plans": plans, "orders_read": n_orders}
    finally:
        _drop(private, settings, dbname)


def main(settings, cases: tuple[str, ...] = ("wuhan", "wuhan-live", "city"), say=print) -> list[dict]:
    results = []
    for case in cases:
        say(f"--- case {case}")
        res = run_case(settings, case, period_length_s=6.0 if case != "city" else 20.0, say=say)
        results.append(res)
        p1 = res["plans"][0]
        say(f"{case}: declared -> first order on the topic {res['first_order_s']:.2f} s "
            f"(target < {res['target_s']:g} s: {'MET' if res['first_order_s'] < res['target_s'] else 'MISSED'}); "
            f"{p1['supply_nodes']} supply nodes, {p1['orders']} orders, status {p1['status']}")
        for p in res["plans"]:
            say(f"  period {p['period']}: snapshot {p['snapshot']:.3f} s, build {p['build']:.3f} s, "
                f"solve {p['solve']:.3f} s, persist {p['persist']:.3f} s, publish {p['publish']:.3f} s "
                f"({p['status']}, {p['orders']} orders)")
        if len(res["plans"]) >= 2:
            a, b = res["plans"][0]["solve"], res["plans"][1]["solve"]
            say(f"  re-plan (compiled problem reused) / first plan solve time: {b:.3f} s / {a:.3f} s = {b / a:.2f}")
    say("--- summary")
    say(f"{'case':<12} {'sites':>6} {'nodes':>6} {'first order s':>14} {'target s':>9} {'snapshot s':>11} "
        f"{'build s':>8} {'solve s':>8} {'persist s':>10} {'publish s':>10}")
    for r in results:
        p = r["plans"][0]
        say(f"{r['case']:<12} {r['sites']:>6} {p['supply_nodes']:>6} {r['first_order_s']:>14.2f} {r['target_s']:>9g} "
            f"{p['snapshot']:>11.3f} {p['build']:>8.3f} {p['solve']:>8.3f} {p['persist']:>10.3f} {p['publish']:>10.3f}")
    return results


@click.command("dispatcher")
@click.option("--case", "cases", multiple=True, type=click.Choice(["wuhan", "wuhan-live", "city"]),
              help="Run only these cases (default: all).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the figures as JSON.")
@click.pass_obj
def command(settings, cases, json_out) -> None:
    """Emergency declared -> first orders on the topic (wuhan pack, city size), with the split."""
    services_up(settings)
    results = main(settings, tuple(cases) or ("wuhan", "wuhan-live", "city"), say=lambda m: print(m, flush=True))
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2, default=str))
