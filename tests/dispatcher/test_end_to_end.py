"""End to end on the real services: declare -> orders on the topic within a bound -> statuses
flow -> stock falls -> the next plan uses it; two regions at once; end -> close-out."""
from __future__ import annotations

import json
import time

import pytest

from tests.dispatcher.conftest import log_of
from tests.dispatcher.helpers import SMALL_SCENARIO, SiteStandIn, TopicReader, make_region, wait_for
from vreserve import topics
from vreserve.db import connect

#: declared -> first order on the topic, with the dispatcher already running. The benchmark
#: (`vreserve bench dispatcher`) measures the real figure against its 5 s target; here the bound is
#: only a sanity check, deliberately generous (9x the target) because this test shares 2 cores
#: with the rest of the suite and other engineers' jobs. The measured latency is printed.
FIRST_ORDER_BOUND_S = 45.0
LENGTH_S = 6.0


def _plan(conn, emergency_id: str, period: int) -> dict | None:
    row = conn.execute("SELECT summary FROM plans WHERE emergency_id = %s AND period = %s AND published_at IS NOT NULL",
                       (emergency_id, period)).fetchone()
    return row[0] if row else None


@pytest.mark.services
@pytest.mark.slow
def test_declare_orders_statuses_stock_next_plan_two_regions_end(settings, procs, unique):
    region_a, region_b = f"a{unique}", f"b{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        make_region(conn, region_a, n_central=2, n_cells=3, per_cell=3, stock={"medicine": 40.0, "pork": 20.0})
        make_region(conn, region_b, n_central=1, n_cells=2, per_cell=2, stock={"medicine": 30.0, "pork": 10.0})
    sites = SiteStandIn(settings)
    reader = TopicReader(settings, topics.DISPATCH_ORDERS)
    try:
        dispatcher = procs.start(settings, "dispatch", "run", name="dispatcher")
        logistics = procs.start(settings, "simulate", "logistics", "--accept", "0.2", "--pick", "0.5",
                                "--deliver", "1.0", "--group", settings.group(f"logistics-{unique}"), name="logistics")
        time.sleep(2.0)  # both connected; the bound below is declare -> first order
        t0 = time.monotonic()
        res = procs.run(settings, "emergency", "declare", "--region", region_a, "--demand", SMALL_SCENARIO,
                        "--periods", "3", "--period-length", f"{LENGTH_S}s", "--reason", "e2e test A")
        assert res.returncode == 0, res.stdout + res.stderr + log_of(dispatcher)
        emergency_a = res.stdout.strip().split("emergency ")[-1]

        def first_order():
            reader.poll(0.2)
            return [r for r in reader.json() if r["kind"] == "order" and r["region"] == region_a]

        orders_a = wait_for(first_order, FIRST_ORDER_BOUND_S, what="first order of region A")
        latency = time.monotonic() - t0
        print(f"\ndeclare -> first order on the topic: {latency:.2f} s (bound {FIRST_ORDER_BOUND_S:g} s)")
        assert latency < FIRST_ORDER_BOUND_S, f"first order after {latency:.1f} s"
        o = orders_a[0]
        assert o["unit"] in ("box", "kg") and o["qty"] > 0 and o["plan_id"].startswith(f"P-{emergency_a}")

        # a second region in emergency at the same time, with its own plan
        res = procs.run(settings, "emergency", "declare", "--region", region_b, "--demand", SMALL_SCENARIO,
                        "--periods", "2", "--period-length", f"{LENGTH_S}s", "--reason", "e2e test B")
        assert res.returncode == 0, res.stdout + res.stderr
        emergency_b = res.stdout.strip().split("emergency ")[-1]
        assert emergency_b != emergency_a

        with connect(settings.pg_dsn, autocommit=True) as conn:
            plan1 = wait_for(lambda: _plan(conn, emergency_a, 1), 10, what="plan 1 stored")
            # statuses flow: every period-1 order delivered (fail rate 0), picks reached the sites
            def all_delivered():
                rows = conn.execute("SELECT status, count(*) FROM dispatch_orders WHERE emergency_id = %s"
                                    " AND period = 1 GROUP BY status", (emergency_a,)).fetchall()
                return dict(rows) if rows and set(dict(rows)) == {"delivered"} else None
            wait_for(all_delivered, LENGTH_S + 15, what="period 1 orders delivered")
            seen = {r[0] for r in conn.execute(
                "SELECT DISTINCT e.status FROM order_status_events e JOIN dispatch_orders o USING (order_id)"
                " WHERE o.emergency_id = %s", (emergency_a,))}
            assert seen == {"accepted", "in_transit", "delivered"}
            picked = conn.execute(
                "SELECT origin, material_id, sum(qty)::float8 FROM dispatch_orders WHERE emergency_id = %s"
                " AND period = 1 AND leg = 'supply' GROUP BY 1, 2", (emergency_a,)).fetchall()
            assert picked
            for site_id, material, qty in picked:
                assert sites.stock(site_id, material) == pytest.approx(sites.base[(site_id, material)] - qty)
            # stock falls in the live warehouse, and the next plan counts on exactly what is left
            plan2 = wait_for(lambda: _plan(conn, emergency_a, 2), LENGTH_S + 10, what="plan 2")
            for material in ("medicine", "pork"):
                taken = sum(q for _s, m, q in picked if m == material)
                assert taken > 0
                assert plan2["materials"][material]["available"] == plan1["materials"][material]["available"] - taken
            # deliveries of period 1 are counted: no backlog beyond what period 1 left short
            m1 = plan1["materials"]["medicine"]
            assert plan2["materials"]["medicine"]["due_with_backlog"] == pytest.approx(
                plan2["materials"]["medicine"]["demand_period"] + m1["due_with_backlog"] - m1["planned_delivery"])
            assert wait_for(lambda: _plan(conn, emergency_b, 1), 10, what="region B's plan")

        # status and orders views
        res = procs.run(settings, "emergency", "status", "--json")
        status = {r["region"]: r for r in json.loads(res.stdout)}
        assert status[region_a]["mode"] == "emergency" and status[region_b]["mode"] == "emergency"
        assert status[region_a]["last_plan_status"] == "optimal"
        res = procs.run(settings, "orders", "--region", region_a, "--status", "delivered")
        assert res.returncode == 0 and "delivered" in res.stdout and region_a in res.stdout

        # back to normal: re-planning stops, open orders closed with cancel records
        for region in (region_a, region_b):
            res = procs.run(settings, "emergency", "end", "--region", region, "--reason", "over")
            assert res.returncode == 0, res.stdout + res.stderr
        with connect(settings.pg_dsn, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM emergencies WHERE emergency_id = ANY(%s)"
                                          " AND closed_out_at IS NOT NULL", ([emergency_a, emergency_b],)).fetchone()[0] == 2,
                     10, what="close-out")
            left_open = conn.execute("SELECT count(*) FROM dispatch_orders WHERE emergency_id = ANY(%s)"
                                     " AND status = 'open'", ([emergency_a, emergency_b],)).fetchone()[0]
            assert left_open == 0
            n_plans = conn.execute("SELECT count(*) FROM plans WHERE emergency_id = %s", (emergency_a,)).fetchone()[0]
        time.sleep(LENGTH_S + 1)
        with connect(settings.pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM plans WHERE emergency_id = %s",
                                (emergency_a,)).fetchone()[0] == n_plans, "re-planning did not stop"
            closed = {r[0] for r in conn.execute("SELECT order_id FROM dispatch_orders WHERE emergency_id = ANY(%s)"
                                                 " AND status = 'closed'", ([emergency_a, emergency_b],))}
        reader.poll(1.0)
        cancels = {r["order_id"] for r in reader.json() if r["kind"] == "cancel"}
        assert closed <= cancels
        res = procs.run(settings, "emergency", "status", "--json")
        status = {r["region"]: r for r in json.loads(res.stdout)}
        assert status[region_a]["mode"] == "normal" and status[region_b]["mode"] == "normal"
        assert dispatcher.poll() is None and logistics.poll() is None, log_of(dispatcher) + log_of(logistics)
    finally:
        reader.close()
        sites.close()
