"""The two operator reads that were shell-only, over HTTP and from the CLI through the same code:
a site's dead letters (`GET /sites/{id}/dead-letters`, `vreserve ingest dead-letters`, read back
from the real dead-letter topic) and the reserve balance (`GET /reserve/balance`, `vreserve
reserve balance`, the LP on the seeded region's real stock and contracts)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from tests.api.conftest import settings_env
from vreserve import kafka_clients, topics
from vreserve.cli import cli
from vreserve.db import connect
from vreserve.kafka_access import BRIDGE
from vreserve.reserve_balance import region_balance
from vreserve.schemas.readings import DeadLetter

pytestmark = pytest.mark.services


def _dead_letter(site: str, kind: str, reason: str, at: datetime) -> bytes:
    return DeadLetter(source="mqtt", reason=reason, payload=f'{{"site_id": "{site}", "x": 1}}'.encode(), at=at,
                      mqtt_topic=f"vr/sites/{site}/stock", context={"kind": kind, "site_id": site}).to_json()


@pytest.fixture(scope="module")
def refused(world):
    """Four refusals of the owner's site (two kinds, a minute apart, written as the bridge writes them)
    and one of a site that is in no registry; returns (owner's site, unknown site, their times)."""
    site, unknown = world.sites["apia"][0], f"ghost-{uuid.uuid4().hex[:6]}"
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    times = [start + timedelta(minutes=i) for i in range(4)]
    producer = kafka_clients.producer(world.settings, BRIDGE)
    try:
        name = world.settings.topic(topics.READINGS_DEAD_LETTER)
        for i, at in enumerate(times):
            kind = "schema" if i % 2 == 0 else "json"
            producer.send(name, key=site.encode(), value=_dead_letter(site, kind, f"refusal {i}", at))
        producer.send(name, key=unknown.encode(), value=_dead_letter(unknown, "unknown_site", "not registered", start))
        producer.flush(30)
    finally:
        producer.close()
    return site, unknown, times


def test_a_sites_dead_letters_newest_first_with_filters_and_paging(world, refused):
    site, unknown, times = refused
    with world.client("viewer") as c:
        page = c.get(f"/api/v1/sites/{site}/dead-letters", params={"limit": 3}).json()
        assert [i["reason"] for i in page["items"]] == ["refusal 3", "refusal 2", "refusal 1"], page
        assert page["next_offset"] == 3 and "at" in page["units"]
        assert page["items"][0]["kind"] == "json" and page["items"][0]["payload_head"].startswith('{"site_id"')
        rest = c.get(f"/api/v1/sites/{site}/dead-letters", params={"limit": 3, "offset": 3}).json()
        assert [i["reason"] for i in rest["items"]] == ["refusal 0"] and rest["next_offset"] is None
        schema = c.get(f"/api/v1/sites/{site}/dead-letters", params={"kind": "schema"}).json()
        assert [i["reason"] for i in schema["items"]] == ["refusal 2", "refusal 0"]
        since = (times[1] + timedelta(seconds=30)).isoformat()
        recent = c.get(f"/api/v1/sites/{site}/dead-letters", params={"since": since}).json()
        assert [i["reason"] for i in recent["items"]] == ["refusal 3", "refusal 2"]
        naive = c.get(f"/api/v1/sites/{site}/dead-letters", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and naive.json()["error"]["fields"][0]["field"] == "query.since"
        ghost = c.get(f"/api/v1/sites/{unknown}/dead-letters").json()   # refusals of a site no registry knows
        assert [i["kind"] for i in ghost["items"]] == ["unknown_site"]
    with world.client("owner") as c:
        assert len(c.get(f"/api/v1/sites/{site}/dead-letters").json()["items"]) == 4
        other = c.get(f"/api/v1/sites/{world.sites['apib'][0]}/dead-letters")
        assert other.status_code == 404 and other.json()["error"]["code"] == "site_not_found"
    with world.client("carrier-a") as c:
        assert c.get(f"/api/v1/sites/{site}/dead-letters").status_code == 403


def test_the_cli_reads_the_same_dead_letters(world, refused):
    site, _unknown, _times = refused
    res = CliRunner().invoke(cli, ["ingest", "dead-letters", "--site", site, "--limit", "2"],
                             env=settings_env(world.settings), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert "refusal 2" in lines[0] and "refusal 3" in lines[1] and lines[-1] == f"2 refused report(s) of site {site}"


@pytest.fixture
def alcohol_in_pack_units(world):
    """The seeded registry counts medical alcohol in plain 'bottle' (no size, so the wuhan pack's
    'bottles (500 ml)' cannot be converted: a 422 first); for the balance itself, the generated
    registry's unit, put back afterwards."""
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        before = conn.execute("SELECT unit FROM materials WHERE material_id = 'medical_alcohol'").fetchone()[0]
        with world.client("supervisor") as c:
            r = c.get("/api/v1/reserve/balance", params={"region": "apia"})
            assert r.status_code == 422 and r.json()["error"]["code"] == "bad_scenario", r.text
            assert "no conversion known" in r.json()["error"]["message"]
        conn.execute("UPDATE materials SET unit = 'bottles (500 ml)' WHERE material_id = 'medical_alcohol'")
        try:
            yield
        finally:
            conn.execute("UPDATE materials SET unit = %s WHERE material_id = 'medical_alcohol'", (before,))


def test_reserve_balance_over_the_api_is_the_clis_computation(world, tmp_path, alcohol_in_pack_units):
    with connect(world.settings.pg_dsn, autocommit=True) as conn:
        expected = region_balance(conn, "apia", "wuhan", 2.0).map_document()
    want = {(c["grid_cell"], m["material"]): m for c in expected["cells"] for m in c["materials"]}
    with world.client("supervisor") as c:
        r = c.get("/api/v1/reserve/balance", params={"region": "apia", "days": 2, "under_target": "false",
                                                     "limit": 2})
        assert r.status_code == 200, r.text
        doc = r.json()
        items = doc["items"]
        while doc["next_offset"] is not None:
            doc = c.get("/api/v1/reserve/balance", params={"region": "apia", "days": 2, "under_target": "false",
                                                           "limit": 2, "offset": doc["next_offset"]}).json()
            items += doc["items"]
        assert doc["pairs"] == len(want) == len(items) and doc["currency"] and "procure" in doc["units"]
        for item in items:
            exp = want[(item["grid_cell"], item["material"])]
            assert {k: item[k] for k in exp} == exp and item["unit"] and item["lat"] is not None
        under = c.get("/api/v1/reserve/balance", params={"region": "apia", "days": 2}).json()
        assert [i for i in under["items"] if not i["under_target"]] == []
        assert len(under["items"]) == doc["pairs_under_target"] == sum(m["under_target"] for m in want.values())
        medicine = c.get("/api/v1/reserve/balance", params={"region": "apia", "days": 2, "under_target": "false",
                                                            "material": "medicine"}).json()["items"]
        assert medicine and {i["material"] for i in medicine} == {"medicine"}
        nowhere = c.get("/api/v1/reserve/balance", params={"region": "nowhere"})
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "region_not_found"
        bad = c.get("/api/v1/reserve/balance", params={"region": "apia", "scenario": "no-such-pack"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_scenario"
    with world.client("viewer") as c:
        assert c.get("/api/v1/reserve/balance", params={"region": "apia"}).status_code == 403
    out = tmp_path / "balance.json"
    res = CliRunner().invoke(cli, ["reserve", "balance", "--region", "apia", "--days", "2", "--json", str(out)],
                             env=settings_env(world.settings), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text()) == expected


def _write_letters(settings, site: str, n: int, first: int = 0) -> None:
    producer = kafka_clients.producer(settings, BRIDGE, linger_ms=20)
    try:
        name = settings.topic(topics.READINGS_DEAD_LETTER)
        start = datetime.now(timezone.utc) - timedelta(seconds=n)
        for i in range(first, first + n):
            producer.send(name, key=site.encode(),
                          value=_dead_letter(site, "schema", f"flood {i}", start + timedelta(seconds=i - first)))
        producer.flush(30)
    finally:
        producer.close()


def test_the_route_reads_the_topic_once_not_per_request(world, refused):
    """One consumer for the server's life: 20 requests one after another and 8 at once start no
    consumer and read no record again; a refusal written just before a request is in its answer."""
    from concurrent.futures import ThreadPoolExecutor

    site, _unknown, _times = refused
    url = f"/api/v1/sites/{site}/dead-letters"
    with world.client("viewer") as c:
        before = c.get(url).json()["reader"]
        for _ in range(20):
            assert c.get(url).status_code == 200
        with ThreadPoolExecutor(8) as pool:
            assert {r.status_code for r in pool.map(lambda _: world.client("viewer").get(url), range(8))} == {200}
        after = c.get(url).json()["reader"]
        assert after["consumers_started"] == before["consumers_started"] == 1, after
        assert after["records_read"] == before["records_read"], (before, after)   # nothing read again
        fresh = f"fresh-{uuid.uuid4().hex[:6]}"
        _write_letters(world.settings, fresh, 1, first=900)
        page = c.get(f"/api/v1/sites/{fresh}/dead-letters").json()
        assert [i["reason"] for i in page["items"]] == ["flood 900"] and page["complete"] is True
        assert page["reader"]["records_read"] == before["records_read"] + 1
    with world.client("owner") as c:
        assert "reader" not in c.get(url).json()   # an owner learns nothing of other sites' refusals


def test_a_site_past_the_per_site_bound_says_its_list_is_not_whole(world):
    from vreserve.dead_letters import KEPT_PER_SITE

    flood = f"flood-{uuid.uuid4().hex[:6]}"
    _write_letters(world.settings, flood, KEPT_PER_SITE + 5)
    with world.client("viewer") as c:
        page = c.get(f"/api/v1/sites/{flood}/dead-letters", params={"limit": 1000}).json()
        assert page["complete"] is False and page["kept_per_site"] == KEPT_PER_SITE and "refusals" in page["units"][
            "kept_per_site"]
        assert len(page["items"]) == min(1000, KEPT_PER_SITE)
        assert page["items"][0]["reason"] == f"flood {KEPT_PER_SITE + 4}"
        rest = c.get(f"/api/v1/sites/{flood}/dead-letters", params={"limit": 1000, "offset": 1000}).json()
        assert len(rest["items"]) == max(0, KEPT_PER_SITE - 1000) and rest["next_offset"] is None


def test_the_route_says_503_when_the_topic_cannot_be_read(world, tmp_path):
    """A server whose dead-letter topic does not exist answers 503, never a list or a trace."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.api.conftest import ROOT, _wait_up, free_port, stop_server

    port = free_port()
    env = {**settings_env(world.settings), "VR_TOPIC_PREFIX": f"nosuch{uuid.uuid4().hex[:6]}."}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_up(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log")
        t0 = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/sites/{world.sites['apia'][0]}/dead-letters",
                      headers={"Authorization": f"Bearer {world.tokens['viewer']}"}, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "dead_letters_unavailable", r.text
        assert time.monotonic() - t0 < 15 and "Traceback" not in r.text
    finally:
        stop_server(proc, 10)
        log.close()
