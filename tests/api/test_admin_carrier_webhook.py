"""An admin sets a carrier's webhook over the API (`PUT /carriers/{id}/webhook`), as `vreserve
carrier-webhooks register` does from the shell: the same registration, the secret shown once, the
admin as the actor in the table and the audit trail; below admin 403, an unknown carrier 404."""
from __future__ import annotations

import uuid

import pytest

from tests.api.test_supervision import _trail
from vreserve.db import connect

pytestmark = pytest.mark.services


def test_admin_sets_a_carriers_webhook_like_the_cli(world):
    cid = f"c-{uuid.uuid4().hex[:8]}"
    admin = world.client("admin")
    # a region without orders: the webhook delivery tests must not see this carrier's (dead) URL
    carrier = {"carrier_id": cid, "name": "Carrier W", "regions": [f"apiw-{cid}"]}
    assert admin.post("/api/v1/carriers", json=carrier).status_code == 201
    url = f"/api/v1/carriers/{cid}/webhook"
    body = {"url": "https://carrier.example/hooks/orders"}
    assert world.client("operator").put(url, json=body).status_code == 403
    first = admin.put(url, json=body)
    assert first.status_code == 200, first.text
    got = first.json()
    assert got["carrier_id"] == cid and got["url"] == body["url"] and got["secret"].startswith("whsec_")
    second = admin.put(url, json=body).json()
    assert second["secret"] != got["secret"]   # re-registering rotates the signing secret
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT url, secret, created_by FROM carrier_webhooks WHERE carrier_id = %s", (cid,)).fetchone()
    assert row == (body["url"], second["secret"], "user:admin1")
    missing = admin.put("/api/v1/carriers/nobody-here/webhook", json=body)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "carrier_not_found"
    assert admin.put(url, json={"url": "ftp://x.example/"}).status_code == 422
    trail = _trail(world, lambda r: r["action"] == f"PUT {url}", 4)
    assert sorted((r["actor"], r["status"]) for r in trail) == [
        ("user:admin1", 200), ("user:admin1", 200), ("user:admin1", 422), ("user:operator1", 403)]
    assert all(body["url"] in str(r["detail"]) for r in trail if r["status"] == 200)
    assert not any(got["secret"] in str(r["detail"]) or second["secret"] in str(r["detail"]) for r in trail)
