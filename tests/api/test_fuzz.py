"""Schemathesis over the whole OpenAPI document, as an admin (every route past the door), with
valid and deliberately invalid input (negative mode): no 500 and no crash anywhere, and every
error in the documented shape. Bounded (a few deterministic examples per operation and mode) so
the suite stays fast."""
from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.services

EXAMPLES = 4
#: Routes that hash a password with argon2id (deliberately slow): fewer examples.
SLOW_PATHS = ("/api/v1/auth/token", "/api/v1/auth/session", "/api/v1/users")
SLOW_EXAMPLES = 2
#: Logging in with random names must not lock the seeded accounts out: those run without a token.
LOGIN_PATHS = ("/api/v1/auth/token", "/api/v1/auth/session")


def _check(case, world, problems: list[str]) -> None:
    headers = {} if case.path in LOGIN_PATHS else {"Authorization": f"Bearer {world.tokens['admin']}"}
    response = case.call(base_url=world.url, headers=headers)
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    if response.status_code >= 500 or "Traceback" in response.text:
        problems.append(f"{where}: {response.text[:300]}")
    elif response.status_code >= 400:
        try:
            err = response.json()["error"]
            assert "code" in err and "message" in err
        except Exception:  # noqa: BLE001 - any other shape is the finding
            problems.append(f"{where}: error not in the documented shape: {response.text[:200]}")


def test_no_server_error_on_any_input(world):
    spec = httpx.get(f"{world.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    problems: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        examples = SLOW_EXAMPLES if operation.path in SLOW_PATHS else EXAMPLES
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                _check(case, world, problems)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode is GenerationMode.NEGATIVE
    assert operations >= 30
    assert not problems, "\n".join(problems[:30])
