"""People and systems: login and lock-out, disabled accounts, revoked tokens, browser sessions with
CSRF, carriers confined to their own orders, owners to their own sites; and the CLI that manages them."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.api.conftest import PASSWORD, ROOT, settings_env
from tests.dispatcher.helpers import TopicReader
from vreserve import identity as ident
from vreserve import topics
from vreserve.db import connect

pytestmark = pytest.mark.services


def _login(world, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{world.url}/api/v1/auth/token", data={"username": name, "password": password})


def _cli(world, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vreserve.cli", *args], cwd=ROOT, env=settings_env(world.settings),
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_user_from_stdin_logs_in_and_locks_out_after_five_failures(world):
    r = _cli(world, "users", "add", "lockme", "--role", "viewer", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    assert _login(world, "lockme", PASSWORD).status_code == 200
    for _ in range(4):
        bad = _login(world, "lockme", "wrong password!")
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_credentials"
    fifth = _login(world, "lockme", "wrong password!")
    assert fifth.status_code == 429 and fifth.json()["error"]["code"] == "account_locked"
    locked = _login(world, "lockme", PASSWORD)  # the right password does not open a locked account
    assert locked.status_code == 429
    with connect(world.settings.pg_dsn) as conn:
        stored = conn.execute("SELECT password_hash FROM api_users WHERE name = 'lockme'").fetchone()[0]
    assert stored.startswith("$argon2id$")
    listing = _cli(world, "users", "list")
    assert "lockme" in listing.stdout and "viewer" in listing.stdout


def test_disabled_user_token_stops_working_at_once(world):
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        ident.add_user(conn, "shortlived", "operator", PASSWORD, "test")
    token = _login(world, "shortlived", PASSWORD).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{world.url}/api/v1/auth/me", headers=headers).json()["actor"] == "user:shortlived"
    assert _cli(world, "users", "disable", "shortlived").returncode == 0
    r = httpx.get(f"{world.url}/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert _login(world, "shortlived", PASSWORD).status_code == 401


def test_tampered_and_expired_bearer_tokens_are_refused(world):
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        key = ident.signing_key(conn)
    expired = ident.sign_session(key, "admin1", ttl_s=60, now=time.time() - 3600)
    good = world.tokens["viewer"]
    body, sig = good.split(".")
    forged_claims = json.loads(ident._unb64(body)) | {"sub": "admin1"}
    forged = ident._b64(json.dumps(forged_claims).encode()) + "." + sig
    for token in (expired, forged, "garbage", good[:-2] + "xx"):
        r = httpx.get(f"{world.url}/api/v1/users", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
    assert ident.verify_session(b"other key", good) is None


def test_api_token_revoked_and_cli_issue(world):
    r = _cli(world, "tokens", "issue", "--owner", world.owner_id, "--expires", "1h")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{world.url}/api/v1/auth/me", headers=headers).json()["actor"] == f"owner:{world.owner_id}"
    token_id = token.split(".")[1]
    with connect(world.settings.pg_dsn) as conn:
        stored = conn.execute("SELECT secret_hash FROM api_tokens WHERE token_id = %s", (token_id,)).fetchone()[0]
    assert token.split(".")[2] not in stored  # only a hash is kept
    assert _cli(world, "tokens", "revoke", token_id).returncode == 0
    assert httpx.get(f"{world.url}/api/v1/auth/me", headers=headers).status_code == 401


def test_browser_session_needs_csrf_header_on_writes(world):
    r = httpx.post(f"{world.url}/api/v1/auth/session", data={"username": "operator1", "password": PASSWORD})
    assert r.status_code == 200
    set_cookie = r.headers.get_list("set-cookie")
    session_line = next(c for c in set_cookie if c.startswith("vr_session="))
    assert "HttpOnly" in session_line and "Secure" in session_line and "SameSite=strict" in session_line
    session = session_line.split(";")[0].split("=", 1)[1]
    csrf = r.json()["csrf_token"]
    cookie = {"Cookie": f"vr_session={session}; vr_csrf={csrf}"}
    assert httpx.get(f"{world.url}/api/v1/auth/me", headers=cookie).json()["actor"] == "user:operator1"
    url = f"{world.url}/api/v1/alerts/{world.alert_id}/acknowledge"
    no_header = httpx.post(url, headers=cookie, json={"note": "on it"})
    assert no_header.status_code == 403 and no_header.json()["error"]["code"] == "csrf_failed"
    wrong = httpx.post(url, headers={**cookie, "X-CSRF-Token": "x" * 43}, json={"note": "on it"})
    assert wrong.status_code == 403
    ok = httpx.post(url, headers={**cookie, "X-CSRF-Token": csrf}, json={"note": "on it"})
    assert ok.status_code == 200, ok.text
    alert = next(a for a in world.client("viewer").get("/api/v1/alerts").json()["items"]
                 if a["alert_id"] == world.alert_id)
    assert alert["acknowledged_by"] == "user:operator1" and alert["acknowledge_note"] == "on it"


def test_carrier_sees_and_reports_only_its_own_orders(world):
    a, b = world.client("carrier-a"), world.client("carrier-b")
    mine = [o["order_id"] for o in a.get("/api/v1/orders").json()["items"]]
    assert sorted(mine) == sorted(world.orders["apia"])
    theirs = world.orders["apib"][0]
    assert a.get(f"/api/v1/orders/{theirs}").status_code == 404
    r = a.post(f"/api/v1/orders/{theirs}/status", json={"status": "accepted"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "order_not_found"
    assert b.get(f"/api/v1/orders/{world.orders['apia'][0]}").status_code == 404
    assert a.get("/api/v1/sites").status_code == 403 and a.get("/api/v1/stock").status_code == 403
    bad = a.post(f"/api/v1/orders/{mine[0]}/status", json={"status": "delivered"})  # no qty
    assert bad.status_code == 422
    reader = TopicReader(world.settings, topics.ORDER_STATUS)
    try:
        ok = a.post(f"/api/v1/orders/{mine[0]}/status", json={"status": "delivered", "qty": 7})
        assert ok.status_code == 202, ok.text
        assert ok.json()["unit"] == "box" and ok.json()["actor"] == "carrier:carrier-a"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(r.get("order_id") == mine[0] for r in reader.json()):
            reader.poll(0.5)
        recs = [r for r in reader.json() if r.get("order_id") == mine[0]]
    finally:
        reader.close()
    assert recs and recs[-1]["actor"] == "carrier:carrier-a" and recs[-1]["qty"] == 7
    assert not any(r.get("order_id") == theirs for r in recs)


def test_owner_sees_only_its_own_sites_contracts_and_settlement(world):
    o = world.client("owner")
    sites = o.get("/api/v1/sites").json()["items"]
    assert sites and {s["owner_id"] for s in sites} == {world.owner_id}
    other = world.sites["apib"][0]
    assert o.get(f"/api/v1/sites/{other}").status_code == 404
    assert o.get(f"/api/v1/sites/{other}/stock").status_code == 404
    contracts = o.get("/api/v1/contracts").json()["items"]
    assert contracts and all(c["owner_id"] == world.owner_id and c["currency"] for c in contracts)
    assert o.get("/api/v1/settlement/statements").status_code == 200
    assert o.get("/api/v1/orders").status_code == 403
    assert o.get("/api/v1/alerts").status_code == 403


def test_expiry_in_the_past_is_refused(world):
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        with pytest.raises(ident.IdentityError):
            ident.issue_token(conn, "carrier", "carrier-a", datetime.now(timezone.utc) - timedelta(seconds=1), "t")


def test_owner_declares_movements_at_its_own_sites_only(world):
    """An owner reports a replenishment through the API (so the rise it causes is explained); a
    repeat is harmless, other figures under the same id and another owner's site are refused, and
    the actor is the owner's token identity."""
    o = world.client("owner")
    own = o.get("/api/v1/sites").json()["items"][0]["site_id"]
    stock = o.get(f"/api/v1/sites/{own}/stock").json()["materials"][0]
    body = {"movement_id": f"mv-{own}", "material": stock["material_id"], "kind": "replenishment", "qty": 5,
            "unit": stock["unit"], "at": datetime.now(timezone.utc).isoformat()}
    first = o.post(f"/api/v1/sites/{own}/movements", json=body)
    assert first.status_code == 201 and first.json()["new"] is True, first.text
    assert first.json()["actor"].startswith("owner:")
    assert o.post(f"/api/v1/sites/{own}/movements", json=body).json()["new"] is False
    changed = o.post(f"/api/v1/sites/{own}/movements", json={**body, "qty": 6})
    assert changed.status_code == 422 and changed.json()["error"]["code"] == "movement_refused"
    other = world.sites["apib"][0]
    assert o.post(f"/api/v1/sites/{other}/movements", json={**body, "movement_id": "mv-x"}).status_code == 404
    with connect(world.settings.pg_dsn) as conn:
        row = conn.execute("SELECT actor, source, qty::float8 FROM stock_movements WHERE movement_id = %s",
                           (f"mv-{own}",)).fetchone()
    assert row == (first.json()["actor"], "api", 5.0)
    with connect(world.settings.pg_dsn, autocommit=True) as conn:   # another owner's site, declared from the shell
        conn.execute("INSERT INTO stock_movements (movement_id, site_id, material_id, kind, qty, unit, at, actor, source)"
                     " VALUES (%s,%s,%s,'consumption',2,%s,now(),'os-user:test','cli') ON CONFLICT DO NOTHING",
                     (f"mv-{other}", other, stock["material_id"], stock["unit"]))
    mine = o.get("/api/v1/movements").json()["items"]
    assert {m["site_id"] for m in mine} == {own} and any(m["movement_id"] == f"mv-{own}" and m["qty"] == 5.0
                                                          and m["unit"] == stock["unit"] for m in mine)
    seen = world.client("viewer").get("/api/v1/movements", params={"site_id": other}).json()["items"]
    assert [(m["movement_id"], m["actor"]) for m in seen] == [(f"mv-{other}", "os-user:test")]
