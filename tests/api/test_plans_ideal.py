"""`GET /emergencies/{id}/plans`: per period the plan's status, gap and shortage per material, beside
the emergency's ideal shortage (vreserve/ideal_shortage.py, the report's definition), every figure
with its unit. The expected ideal is worked out here from the demand pack itself."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from vreserve.db import connect
from vreserve.scenario import load_scenario
from vreserve.units import conversion_factor

pytestmark = pytest.mark.services


def _expected(periods: int, scale: float, live: dict[str, float], registry_units: dict[str, str]) -> dict:
    """Per material of the wuhan pack: (unit, demand, centres' usable stock, ideal shortage) in the registry's unit."""
    pack = load_scenario("wuhan").to_dict()
    out = {}
    for mat in pack["materials"]:
        m = mat["id"]
        demand = 0.0
        for rc in pack["rescue_centres"]:
            v = (rc.get("demand") or {}).get(m, 0)
            series = list(v) if isinstance(v, (list, tuple)) else [float(v)] * pack["periods"]
            demand += sum(float(x) for x in series[:periods]) * scale
        usable = sum(max(0.0, float((dc.get("initial") or {}).get(m, 0)) - float((dc.get("safety_stock") or {}).get(m, 0)))
                     for dc in pack["distribution_centres"])
        unit = registry_units.get(m, mat.get("unit"))
        factor = conversion_factor(mat.get("unit"), unit) or 1.0
        demand, usable = demand * factor, usable * factor
        out[m] = (unit, demand, usable, max(0.0, demand - usable - live.get(m, 0.0)))
    return out


def test_plans_show_each_period_beside_the_ideal_shortage_with_units(world):
    em = f"EM-ideal-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    live = {"medicine": 5000.0, "ventilator": 3.0}
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source, demand_scale, ended_at, ended_by, end_reason) VALUES"
                     " (%s,'apia',%s,'user:seed','test',2,60,'wuhan',1.5,%s,'user:seed','over')",
                     (em, now - timedelta(hours=2), now - timedelta(hours=1)))
        units = dict(conn.execute("SELECT material_id, unit FROM materials").fetchall())
        for period in (1, 2):
            summary = {"materials": {"medicine": {"unit": units["medicine"], "available": live["medicine"] if period == 1 else 1,
                                                  "due_with_backlog": 100, "planned_shortage": 30 * period},
                                     "ventilator": {"unit": units["ventilator"], "available": live["ventilator"],
                                                    "due_with_backlog": 0, "planned_shortage": 0}},
                       "orders": 0}
            conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status, objective, gap,"
                         " solve_seconds, summary) VALUES (%s,%s,%s,%s,'optimal',1,0.01,0.2,%s)",
                         (f"P-{em}-{period:03d}", em, period, now - timedelta(minutes=90 - period), json.dumps(summary)))
        empty = f"EM-noplan-{uuid.uuid4().hex[:8]}"
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source, ended_at, ended_by, end_reason) VALUES"
                     " (%s,'apia',%s,'user:seed','test',2,60,'wuhan',%s,'user:seed','over')",
                     (empty, now - timedelta(hours=2), now - timedelta(hours=1)))
    v = world.client("viewer")
    page = v.get(f"/api/v1/emergencies/{em}/plans")
    assert page.status_code == 200, page.text
    body = page.json()
    ideal = body["ideal"]
    assert ideal["emergency_id"] == em and ideal["ideal_note"] is None
    expected = _expected(2, 1.5, live, units)   # live supply = what the FIRST plan saw
    assert set(ideal["materials"]) == set(expected)
    for m, (unit, demand, usable, short) in expected.items():
        got = ideal["materials"][m]
        assert got["unit"] == unit and got["live_available"] == live.get(m, 0.0)
        assert got["demand"] == pytest.approx(demand) and got["centres_usable"] == pytest.approx(usable)
        assert got["ideal_shortage"] == pytest.approx(short)
        assert got["ideal_shortage_rate"] == pytest.approx(short / demand if demand else 0.0)
    assert ideal["materials"]["medicine"]["ideal_shortage"] == 0   # 5000 boxes live cover it
    assert any(f["ideal_shortage"] > 0 for f in ideal["materials"].values())
    assert [i["period"] for i in body["items"]] == [1, 2]
    for item in body["items"]:
        med = item["materials"]["medicine"]
        assert (item["status"], item["gap"], med["unit"]) == ("optimal", 0.01, units["medicine"])
        assert med["shortage_rate"] == pytest.approx(0.3 * item["period"])
        assert med["ideal_shortage_rate"] == ideal["materials"]["medicine"]["ideal_shortage_rate"]
    second = v.get(f"/api/v1/emergencies/{em}/plans", params={"limit": 1, "offset": 1}).json()
    assert [i["period"] for i in second["items"]] == [2] and second["ideal"] == ideal
    none = v.get(f"/api/v1/emergencies/{empty}/plans").json()
    assert none["items"] == [] and none["ideal"]["materials"] == {} and "no plan yet" in none["ideal"]["ideal_note"]
    missing = v.get("/api/v1/emergencies/EM-none/plans")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "emergency_not_found"
