"""The audit record of a write is in the trail before its answer reaches the client: read at once
(no polling), one client's writes are all there, in the order it sent them."""
from __future__ import annotations

import uuid

import pytest

from vreserve import auditlog
from vreserve.db import connect

pytestmark = pytest.mark.services


def test_each_answer_comes_after_its_audit_record_in_order(world):
    op = world.client("operator")
    ids = [f"no-such-alert-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        for alert_id in ids:
            r = op.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={})
            assert r.status_code == 404
            newest = auditlog.recent(conn, 1, 0, "user:operator1")   # at once: no waiting
            assert newest and newest[0]["target"] == alert_id and newest[0]["outcome"] == "refused", newest
        rows = [r for r in auditlog.recent(conn, 50, 0, "user:operator1") if r["target"] in ids]
    assert [r["target"] for r in reversed(rows)] == ids
