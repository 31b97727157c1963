"""The supply snapshot: contracts, trust, suspension, reservations, never more than reported."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from dispatcher.snapshot import available_qty, supply_nodes, supply_snapshot
from tests.dispatcher.helpers import make_region, set_stock
from vreserve.db import connect


def test_available_qty_rule():
    assert available_qty(100, 80, 1.0, 0) == 80          # contract caps
    assert available_qty(50, 80, 1.0, 0) == 50           # reported caps
    assert available_qty(100, 100, 0.5, 10) == 40        # trust, then reserved
    assert available_qty(10, 100, 1.0, 25) == 0          # never negative
    assert available_qty(9.99, 100, 1.0, 0) == 9         # whole units only, never more than reported
    assert available_qty(100, 100, 0.3, 0) == 30         # 0.3 * 100 float noise still 30


@pytest.mark.services
def test_snapshot_filters_and_reserves(settings, unique):
    region = f"r{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        reg = make_region(conn, region, n_central=1, n_cells=2, per_cell=2,
                          stock={"medicine": 100.0, "pork": 50.0}, contract={"medicine": 80.0, "pork": 60.0})
        now = datetime.now(timezone.utc)
        rows = supply_snapshot(conn, region, now)
        by = {(r.site_id, r.material_id): r for r in rows}
        assert len(rows) == len(reg.sites) * 2
        assert by[(f"{region}-C0", "medicine")].available == 80
        assert by[(f"{region}-C0", "pork")].available == 50
        # lower trust -> less; suspended -> nothing; expired contract -> nothing
        conn.execute("UPDATE sites SET trust = 0.5 WHERE site_id = %s", (f"{region}-D0-0",))
        conn.execute("UPDATE sites SET status = 'suspended' WHERE site_id = %s", (f"{region}-D0-1",))
        conn.execute("UPDATE contracts SET valid_to = %s, valid_from = %s WHERE site_id = %s AND material_id = 'pork'",
                     (date(2020, 1, 2), date(2020, 1, 1), f"{region}-D1-0"))
        # an open supply order reserves 30 medicine at C0 (needs an emergency and a plan row)
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s,%s,%s,'t','t',3,5,'wuhan')", (f"E{unique}", region, now))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES (%s,%s,1,%s,'optimal')",
                     (f"P{unique}", f"E{unique}", now))
        conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                     " material_id, qty, unit, created_at, status_at) VALUES (%s,%s,%s,1,'supply',%s,'DC1','medicine',30,'box',%s,%s)",
                     (f"O{unique}", f"P{unique}", f"E{unique}", f"{region}-C0", now, now))
        rows = supply_snapshot(conn, region, now)
        by = {(r.site_id, r.material_id): r for r in rows}
        assert by[(f"{region}-D0-0", "medicine")].available == 40
        assert (f"{region}-D0-1", "medicine") not in by
        assert (f"{region}-D1-0", "pork") not in by
        assert by[(f"{region}-C0", "medicine")].available == 50
        # excluded (about to be superseded) orders do not count
        rows = supply_snapshot(conn, region, now, exclude_orders=[f"O{unique}"])
        assert {(r.site_id, r.material_id): r for r in rows}[(f"{region}-C0", "medicine")].available == 80
        # a picked order stays reserved until a newer reading shows the pick
        picked = now + timedelta(seconds=1)
        conn.execute("UPDATE dispatch_orders SET status = 'delivered', picked_at = %s WHERE order_id = %s",
                     (picked, f"O{unique}"))
        rows = supply_snapshot(conn, region, now)
        assert {(r.site_id, r.material_id): r for r in rows}[(f"{region}-C0", "medicine")].available == 50
        set_stock(conn, f"{region}-C0", "medicine", 70.0, ts=picked + timedelta(seconds=2), seq=2)
        rows = supply_snapshot(conn, region, now)
        assert {(r.site_id, r.material_id): r for r in rows}[(f"{region}-C0", "medicine")].available == 70
        # grid cell scope and nodes
        rows = supply_snapshot(conn, region, now, grid_cells=[f"{region}-g1"])
        assert {r.grid_cell for r in rows} == {f"{region}-g1"}
        nodes = supply_nodes(supply_snapshot(conn, region, now))
        ids = [n.node_id for n in nodes]
        assert ids == sorted(ids) and f"cell:{region}-g0" in ids and f"{region}-C0" in ids
        cell0 = next(n for n in nodes if n.node_id == f"cell:{region}-g0")
        assert cell0.available["medicine"] == 40      # D0-0 at trust 0.5; D0-1 suspended


@pytest.mark.services
def test_stale_and_distrusted_stock_is_left_out_and_said(settings, unique):
    """Issue 16: a reading older than the contract's reporting interval x the tolerance, or a
    (site, material) with an open critical finding, gives a plan nothing; the summary says why."""
    from dispatcher.snapshot import left_out_summary

    region = f"r{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        make_region(conn, region, n_central=3, n_cells=1, per_cell=1, stock={"medicine": 100.0})
        now = datetime.now(timezone.utc)
        old, fresh, watched = f"{region}-C0", f"{region}-C1", f"{region}-C2"
        set_stock(conn, old, "medicine", 100.0, ts=now - timedelta(seconds=400), seq=2)  # > 30 x 10 s
        set_stock(conn, fresh, "medicine", 100.0, ts=now - timedelta(seconds=200), seq=2)  # within
        conn.execute("INSERT INTO alerts (alert_id, kind, severity, site_id, material_id, message, at)"
                     " VALUES (%s, 'pick_not_reflected', 'critical', %s, 'medicine', 'test', now())",
                     (f"pick_not_reflected:{watched}:medicine:1", watched))
        by = {(r.site_id, r.material_id): r for r in supply_snapshot(conn, region, now)}
        assert by[(old, "medicine")].available == 0 and by[(old, "medicine")].left_out == 100
        assert by[(old, "medicine")].left_out_reason.startswith("stale: last reading 400 s old > 30 x the 10 s")
        assert by[(fresh, "medicine")].available == 100 and by[(fresh, "medicine")].left_out == 0
        assert by[(watched, "medicine")].available == 0
        assert by[(watched, "medicine")].left_out_reason == f"distrusted: open finding pick_not_reflected:{watched}:medicine:1"
        # a contract with a 5 s reporting interval: 200 s is stale for it
        conn.execute("INSERT INTO contract_site_terms (contract_id, reporting_interval_s) VALUES (%s, 5)",
                     (f"K-{fresh}-medicine",))
        rows = supply_snapshot(conn, region, now)
        by = {(r.site_id, r.material_id): r for r in rows}
        assert by[(fresh, "medicine")].available == 0 and "5 s reporting interval" in by[(fresh, "medicine")].left_out_reason
        per_mat, line = left_out_summary(rows)
        assert per_mat == {"medicine": 300}
        assert line.startswith("stock left out: medicine 300 box (2 stale, 1 distrusted site-material(s); e.g.")
        # it reports again / the finding is resolved: back in the plan
        set_stock(conn, old, "medicine", 90.0, ts=now, seq=3)
        conn.execute("UPDATE alerts SET resolved_at = now() WHERE site_id = %s", (watched,))
        by = {(r.site_id, r.material_id): r for r in supply_snapshot(conn, region, now)}
        assert by[(old, "medicine")].available == 90 and by[(watched, "medicine")].available == 100
