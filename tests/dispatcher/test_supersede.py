"""What a new plan supersedes (issue 11): only open orders published before its period's start
minus a grace, and only when the statuses were caught up; everything else is kept as committed."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dispatcher import book
from dispatcher.service import supersede_cutoff
from tests.dispatcher.helpers import ensure_materials
from vreserve.db import connect
from vreserve.emergencies import get_emergency
from vreserve.schemas.common import utc_now

pytestmark = pytest.mark.services


def test_only_open_orders_published_before_the_cutoff_are_superseded(settings, unique):
    now = utc_now()
    declared = now - timedelta(seconds=100)
    em_id = f"E-{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        ensure_materials(conn)
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, %s, %s, 't', 't', 5, 40, 'wuhan')",
                     (em_id, f"R-{unique}", declared))
        em = get_emergency(conn, em_id)
        cutoff = supersede_cutoff(em, 3)  # period 3 starts at 80 s; grace 10 s -> 70 s
        assert cutoff == declared + timedelta(seconds=70)
        plans = {"early": declared + timedelta(seconds=5), "late": declared + timedelta(seconds=79), "held": None}
        for period, (name, published) in enumerate(plans.items(), start=1):
            conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status, published_at)"
                         " VALUES (%s,%s,%s,%s,'optimal',%s)", (f"P-{unique}-{name}", em_id, period, declared, published))
        orders = [("early", "open"), ("early", "accepted"), ("late", "open"), ("held", "open")]
        for i, (plan, status) in enumerate(orders):
            conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                         " material_id, qty, unit, status, created_at, status_at) VALUES (%s,%s,%s,1,'supply','S1',"
                         "'DC1','medicine',5,'box',%s,now(),now())", (f"O-{unique}-{i}", f"P-{unique}-{plan}", em_id,
                                                                    status))
        assert book.open_orders(conn, em_id, cutoff) == [(f"O-{unique}-0", "DC1")]
        assert book.open_orders(conn, em_id, None) == []  # statuses not caught up: supersede nothing
        # kept orders still count as committed for the next plan (budget: ordered qty x price)
        assert book.pipeline(conn, em_id, [f"O-{unique}-0"], {"medicine": 1.0}).spent == 15.0
