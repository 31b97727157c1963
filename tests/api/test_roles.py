"""Each identity can do exactly what its role allows, on every route the OpenAPI document lists:
401 without an identity, 403 with a too-small role or a system token the route does not admit,
past the door (neither 401 nor 403) with the right one. The table is the app's own OpenAPI, so a
new route is covered (and must state its role) without editing this test."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import ROLES

pytestmark = pytest.mark.services

#: Path parameters: ids that do not exist, so that an allowed write changes nothing (404 / 422).
PARAMS = {"site_id": "no-such-site", "emergency_id": "EM-none", "order_id": "O-none", "alert_id": "no-such-alert",
          "audit_id": "A-none", "statement_id": "ST-none", "event_id": "mode-none", "name": "nobody",
          "token_id": "tok_00", "carrier_id": "nobody", "plan_id": "AP-none",
          "grid_cell": "no-such-cell", "material_id": "no-such-material", "quarantine_id": "987654321",
          "webhook_id": "no-such-hook", "run_id": "SR-none"}
PUBLIC = "public"
SYSTEMS = ("carrier-a", "owner")


def _routes(world) -> list[tuple[str, str, str, list[str]]]:
    spec = httpx.get(f"{world.url}/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "x-required-role" in op, f"{method.upper()} {path} does not state its role"
            out.append((method.upper(), path, op["x-required-role"], op.get("x-systems", [])))
    return out


def _call(world, who: str | None, method: str, path: str) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)
    with world.client(who) as c:
        return c.request(method, url, json={} if method != "GET" else None)


def _allowed(role: str, systems: list[str], who: str) -> bool:
    if who in ROLES:
        return role in ROLES and ROLES.index(who) >= ROLES.index(role)
    return {"carrier-a": "carrier", "owner": "owner"}[who] in systems


def _verdict(world, case: tuple) -> str | None:
    """The problem with one (route, identity) call, None if it got the answer its role implies."""
    method, path, role, systems, who = case
    r = _call(world, who, method, path)
    if who is None:
        if r.status_code != 401 or r.json()["error"]["code"] != "not_authenticated":
            return f"{method} {path} without identity: {r.status_code} {r.text[:120]}"
    elif _allowed(role, systems, who):
        if r.status_code in (401, 403) or r.status_code >= 500:
            return f"{method} {path} as {who} (needs {role} {systems}): {r.status_code} {r.text[:160]}"
    elif r.status_code != 403 or r.json()["error"]["code"] != "forbidden":
        return f"{method} {path} as {who} (needs {role} {systems}): {r.status_code}, want 403"
    return None


def test_every_route_states_its_role_and_enforces_it(world):
    routes = _routes(world)
    assert len(routes) >= 30
    cases = [(m, p, role, systems, who) for m, p, role, systems in routes if role != PUBLIC
             for who in (None,) + ROLES + SYSTEMS]
    with ThreadPoolExecutor(8) as pool:  # independent calls; in parallel to keep the suite fast
        failures = [f for f in pool.map(lambda c: _verdict(world, c), cases) if f]
    assert len(cases) >= 30 * 7
    assert not failures, "\n".join(failures)


def test_roles_are_in_openapi_and_docs_served(world):
    spec = httpx.get(f"{world.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert all(p.startswith("/api/v1/") for p in spec["paths"])
    assert spec["paths"]["/api/v1/emergencies"]["post"]["x-required-role"] == "operator"
    assert spec["paths"]["/api/v1/audits"]["post"]["x-required-role"] == "supervisor"
    assert spec["paths"]["/api/v1/users"]["post"]["x-required-role"] == "admin"
    assert spec["paths"]["/api/v1/orders/{order_id}/status"]["post"]["x-systems"] == ["carrier"]
    assert httpx.get(f"{world.url}/api/docs").status_code == 200
