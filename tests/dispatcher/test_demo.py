"""The main job, small: `vreserve demo` on the real services with the real fleet, bridge, stream
worker, dispatcher and logistics simulator; the report shows orders delivered and stock picked at
the sites, and no demo process is left behind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from tests.dispatcher.conftest import ROOT, VRESERVE, settings_env


@pytest.mark.services
@pytest.mark.slow
def test_demo_end_to_end(settings, base_settings, tmp_path):
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    from vreserve.db import connect

    database = f"vr_test_demo_{uuid.uuid4().hex[:6]}"
    out = tmp_path / "demo"
    env = settings_env(base_settings)
    try:
        res = subprocess.run(
            VRESERVE + ["demo", "--sites", "60", "--periods", "2", "--period-length", "10s", "--interval", "1.5",
                        "--fail-rate", "0", "--database", database, "--out", str(out), "--quiet"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        report = json.loads((out / "report.json").read_text())
        assert (out / "report.png").stat().st_size > 10_000
        assert [p["status"] for p in report["plans"]] == ["optimal", "optimal"]
        # fail rate 0: an order fails only when its site handed over nothing (never a pick timeout)
        assert set(report["orders_by_status"]) <= {"delivered", "closed", "cancelled", "failed"}
        assert all("handed over nothing" in r for r in report["failure_reasons"]), report["failure_reasons"]
        assert report["orders_by_status"].get("delivered", 0) > 0
        mats = report["materials"]
        assert sum(m["delivered"] for m in mats.values()) > 0
        assert sum(m["picked_at_sites"] for m in mats.values()) > 0, "no stock picked at the sites"
        # the registry's stock of the pack's materials was sized to the pack's own supply
        sizing = report["registry"]["stock_sized_to_pack"]
        assert sizing and all(f["after"] == round(f["target"]) for f in sizing.values())
        for m in mats.values():
            assert m["unit"] and m["demand"] >= m["delivered"] >= 0
            assert 0 <= m["ideal_shortage_rate"] <= 1 and m["theta"] > 0
            assert m["shortage"] == pytest.approx(m["demand"] - m["delivered"], abs=1e-6)
        assert "all demo processes stopped" in res.stdout
        # orders for supply legs were picked at real simulated sites: the fleet applied them
        fleet_log = (out / "logs" / "fleet.log").read_text()
        applied = [int(n) for n in re.findall(r"picks applied (\d+)", fleet_log)]
        assert applied and max(applied) > 0, "the fleet applied no pick command"
        # every subprocess the demo started is gone
        pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", res.stdout)]
        # stream, bridge, fleet, dispatcher, serve (the console), carrier-webhooks, logistics (on webhooks)
        assert len(pids) == 7
        # the console's address and a login were printed; the password only in a file only its owner reads
        assert re.search(r"console: http://127\.0\.0\.1:\d+/ \(user demo-operator, password in ", res.stdout)
        login = out / "console-login.txt"
        assert login.stat().st_mode & 0o077 == 0 and "password: " in login.read_text()
        assert login.read_text().split("password: ")[1].strip() not in res.stdout + res.stderr
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        with connect(base_settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin = kafka_clients.admin(base_settings, ADMIN)
        try:
            mine = [t for t in admin.list_topics() if t.startswith("demo") and (out / "logs").exists()
                    and any(t.startswith(p) for p in _prefixes(out))]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()


def _prefixes(out) -> list[str]:
    try:  # the carrier is on webhooks: the delivery service reads the demo's dispatch-orders topic
        text = (out / "logs" / "webhooks.log").read_text()
    except OSError:
        return []
    return sorted({w.split("dispatch-orders")[0] for w in text.split() if w.endswith("dispatch-orders")})
