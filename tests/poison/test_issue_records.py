"""Each crash of issue 10 section 1, reproduced on the real services: the service stays up, the bad
record is kept with its reason and original bytes, the next good record is applied."""
from __future__ import annotations

import base64
import json
import signal
import threading
import time

import pytest

from dispatcher.operator import declare_event
from dispatcher.service import Dispatcher
from ingest.bridge import Bridge, BridgeConfig
from vreserve.registry_generate import generate_registry
from vreserve.registry_store import store_registry
from tests.dispatcher.helpers import make_region
from tests.poison.helpers import alive, log_of, produce, project_tracebacks, read_topic, wait_for
from vreserve.mqtt import connect as mqtt_connect, new_client
from vreserve import topics
from vreserve.quarantine import RecordRef, note_failure, run_guarded
from vreserve.schemas.audits import AuditCount, AuditRecord
from vreserve.schemas.common import utc_now
from vreserve.schemas.dispatch import DemandUpdate, stable_id
from vreserve.schemas.readings import DeadLetter, ReadingBatch

pytestmark = pytest.mark.services

DEEP_10K = b"[" * 5000 + b"]" * 5000


def _mode_records(region: str) -> list[bytes]:
    nul_reason = declare_event(region, (), "wuhan", 2, 5.0, "x").to_payload()
    nul_reason["reason"] = "flood\u0000"
    return [b"\xff\xfe\x00junk", json.dumps(nul_reason).encode(), b"[" * 100_000 + b"]" * 100_000]


def _demand(unique: str, region: str, qty: float) -> bytes:
    return DemandUpdate(f"good-{unique}-{qty:g}", region, "RC-1", "medicine", 2, qty, utc_now()).to_json()


def test_dispatcher_survives_the_issue_records_and_a_restart(settings, procs, conn, unique):
    region = f"p{unique}"
    make_region(conn, region, n_central=1, n_cells=1, per_cell=1)
    p = procs.start(settings, "dispatch", "run", name="dispatcher")
    mode_bad = _mode_records(region)
    mode_pos = produce(settings, topics.MODE, [(region.encode(), raw) for raw in mode_bad])
    status_pos = produce(settings, topics.ORDER_STATUS, [(b"O-deep", DEEP_10K)])
    produce(settings, topics.DEMAND, [(b"RC-1", _demand(unique, region, 42))])
    wait_for(lambda: conn.execute("SELECT 1 FROM demand_updates WHERE update_id = %s",
                                  (f"good-{unique}-42",)).fetchone(), 120, "the good demand update", alive=lambda: alive(p))
    # topics are read in no set order between them: wait for every bad record's row too
    (s_part, s_off), = status_pos
    wait_for(lambda: conn.execute("SELECT count(*) FROM mode_events WHERE event_id = ANY(%s)",
                                  ([stable_id("MODE-BAD", f"{a}:{b}") for a, b in mode_pos],)).fetchone()[0] == 3
             and conn.execute('SELECT 1 FROM rejected_records WHERE topic = %s AND partition = %s AND "offset" = %s',
                              (settings.topic(topics.ORDER_STATUS), s_part, s_off)).fetchone(),
             60, "the bad records' rows", alive=lambda: alive(p))
    for raw, (part, off) in zip(mode_bad, mode_pos):
        row = conn.execute("SELECT accepted, error, payload FROM mode_events WHERE event_id = %s",
                           (stable_id("MODE-BAD", f"{part}:{off}"),)).fetchone()
        assert row is not None and row[0] is False and "malformed mode event" in row[1]
        assert base64.b64decode(row[2]["raw_b64"]) == raw[:256 * 1024]  # the original bytes, kept
    reasons = [r[0] for r in conn.execute("SELECT error FROM mode_events WHERE event_id = ANY(%s)",
                                          ([stable_id("MODE-BAD", f"{a}:{b}") for a, b in mode_pos],))]
    assert any("not UTF-8" in r for r in reasons) and any("NUL" in r for r in reasons)
    assert any("larger than" in r for r in reasons)
    (part, off), = status_pos
    row = conn.execute('SELECT raw, reason FROM rejected_records WHERE consumer = %s AND topic = %s'
                       ' AND partition = %s AND "offset" = %s',
                       ("dispatcher", settings.topic(topics.ORDER_STATUS), part, off)).fetchone()
    assert row is not None and bytes(row[0]) == DEEP_10K and "order status refused" in row[1]
    # mode.errors carries a readable reason for each bad mode event
    ids = {stable_id("MODE-BAD", f"{a}:{b}") for a, b in mode_pos}

    def found(rs):
        return ids & {json.loads(r.value).get("event_id") for r in rs}
    assert found(read_topic(settings, topics.MODE_ERRORS, lambda rs: found(rs) == ids, timeout=30)) == ids
    # a restart does not stumble on them either (it re-reads from its stored positions)
    p.send_signal(signal.SIGTERM)
    assert p.wait(90) == 0, log_of(p)
    p2 = procs.start(settings, "dispatch", "run", name="dispatcher-again")
    produce(settings, topics.DEMAND, [(b"RC-1", _demand(unique, region, 43))])
    wait_for(lambda: conn.execute("SELECT 1 FROM demand_updates WHERE update_id = %s",
                                  (f"good-{unique}-43",)).fetchone(), 120, "a demand update after the restart",
             alive=lambda: alive(p2))


def _audit_world(conn, unique: str) -> tuple[str, str]:
    site, material = f"as-{unique}", f"masks-{unique}"
    conn.execute("INSERT INTO materials VALUES (%s, 'Masks', 'box', 'protective', true)", (material,))
    conn.execute("INSERT INTO sites (site_id, name, owner_id, owner_kind, tier, region, grid_cell, lat, lon, status,"
                 " trust) VALUES (%s, %s, 'o', 'enterprise', 'centralized', %s, %s, 30.5, 114.3, 'active', 1)",
                 (site, site, f"reg-{unique}", f"cell-{unique}"))
    return site, material


def test_audit_consumer_survives_nul_and_deep_nesting(settings, procs, conn, unique):
    site, material = _audit_world(conn, unique)
    good = AuditRecord(f"A-{unique}", site, "inspector-7", utc_now(), (AuditCount(material, 5.0, "box"),))
    nul = good.to_payload() | {"audit_id": f"A-nul-{unique}", "auditor": "insp\u0000ector"}
    bad = [json.dumps(nul).encode(), DEEP_10K]
    pos = produce(settings, topics.AUDITS, [(site.encode(), raw) for raw in bad] + [(site.encode(), good.to_json())])
    for attempt in range(2):  # and a rerun over the same records
        res = procs.run(settings, "audit", "consume", "--idle-timeout", "6", "--group", settings.group(f"supervision-pz-{unique}-{attempt}"))
        assert res.returncode == 0, res.stdout + res.stderr
        assert not project_tracebacks(res.stderr), res.stderr
    topic = settings.topic(topics.AUDITS)
    for raw, (part, off) in zip(bad, pos):
        row = conn.execute("SELECT raw, reason FROM audit_rejections WHERE rejection_id = %s",
                           (f"{topic}:{part}:{off}",)).fetchone()
        assert row is not None and bytes(row[0]) == raw and row[1]
    assert conn.execute("SELECT count(*) FROM audits WHERE audit_id = %s", (good.audit_id,)).fetchone()[0] == 1


def test_audit_consume_leaves_its_group_on_sigterm(settings, procs, unique):
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    group = settings.group(f"supervision-pz-leave-{unique}")
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        def members() -> int:
            return len(admin.describe_groups([group])[group]["members"])

        p = procs.start(settings, "audit", "consume", "--group", group, name="audit-consume")
        wait_for(lambda: members() == 1, 60, "the consumer to join its group", alive=lambda: alive(p))
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0, log_of(p)
        t0 = time.monotonic()
        wait_for(lambda: members() == 0, 15, "the group to be empty (it waited for the 45 s session timeout)")
        assert time.monotonic() - t0 < 15
    finally:
        admin.close()


def test_bridge_dead_letters_deep_nesting_and_goes_on(settings, unique):

    reg = generate_registry(2, seed=3, id_prefix=f"pz{unique}-")
    from vreserve.db import connect
    with connect(settings.pg_dsn) as c:
        store_registry(c, reg)
    site = next(iter(reg.sites))
    material = next(iter(reg.sites[site].materials))
    good = json.dumps({"v": 1, "site_id": site, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seq": 7,
                       "readings": [{"material": material, "qty": 1, "unit": reg.materials[material].unit}]}).encode()
    bridge = Bridge(settings, BridgeConfig(client_id=f"pz-bridge-{unique}"))
    bridge.start()
    client = new_client(settings.mqtt, f"pz-pub-{unique}")
    mqtt_connect(client, settings.mqtt)
    client.loop_start()
    try:
        for raw in (DEEP_10K, good):
            client.publish(topics.mqtt_stock_topic(site), raw, qos=1).wait_for_publish(10)
        wait_for(lambda: bridge.counters.forwarded >= 1 and bridge.counters.dead_lettered >= 1, 30,
                 "the bridge to forward and dead-letter", alive=bridge.check)
        letters = read_topic(settings, topics.READINGS_DEAD_LETTER,
                             lambda rs: any(DeadLetter.from_json(r.value).payload == DEEP_10K for r in rs))
        letter = next(DeadLetter.from_json(r.value) for r in letters if DeadLetter.from_json(r.value).payload == DEEP_10K)
        assert "schema" in letter.reason or "not valid JSON" in letter.reason
        forwarded = read_topic(settings, topics.READINGS, lambda rs: any(r.key == site.encode() for r in rs))
        assert any(ReadingBatch.from_json(r.value).report.seq == 7 for r in forwarded if r.key == site.encode())
        bridge.check()
    finally:
        client.loop_stop()
        client.disconnect()
        t0 = time.monotonic()
        bridge.stop(drain_timeout_s=2.0, end_mqtt_session=True)
        assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("command", [("registry", "load"), ("plan",)])
def test_binary_file_gets_a_one_line_error(settings, procs, tmp_path, command):
    path = tmp_path / "junk.yaml"
    path.write_bytes(bytes(range(256)) * (5 * 1024 * 1024 // 256))
    res = procs.run(settings, *command, str(path))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "UnicodeDecodeError" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "not a UTF-8 text file" in res.stderr


class _BuggyDispatcher(Dispatcher):
    """The dispatcher with a bug injected: any record holding b"POISON-BUG" makes handle() raise."""

    calls = 0

    def handle(self, conn, topic, value, position, ref=None):
        if b"POISON-BUG" in value:
            type(self).calls += 1
            raise RuntimeError("injected bug")
        return super().handle(conn, topic, value, position, ref)


def test_a_record_that_keeps_failing_is_quarantined_listed_and_replayed(settings, procs, conn, unique):
    region = f"q{unique}"
    make_region(conn, region, n_central=1, n_cells=1, per_cell=1)
    poison = json.dumps({"v": 1, "note": f"POISON-BUG {unique}"}).encode()
    (part, off), = produce(settings, topics.DEMAND, [(b"RC-1", poison)])
    produce(settings, topics.DEMAND, [(b"RC-1", _demand(unique, region, 7))])
    d = _BuggyDispatcher(settings, client_id=f"pz-{unique}", say=lambda m: None)
    done = threading.Event()
    t = threading.Thread(target=lambda: (d.run(until=done.is_set)), daemon=True)
    t.start()
    try:
        wait_for(lambda: conn.execute("SELECT 1 FROM demand_updates WHERE update_id = %s",
                                      (f"good-{unique}-7",)).fetchone(), 90, "the good record after the poison",
                 alive=lambda: t.is_alive() or pytest.fail("dispatcher thread died"))
    finally:
        done.set()
        t.join(30)
    row = conn.execute('SELECT quarantine_id, attempts, quarantined_at, error, raw FROM quarantined_records'
                       ' WHERE consumer = %s AND topic = %s AND partition = %s AND "offset" = %s',
                       ("dispatcher", settings.topic(topics.DEMAND), part, off)).fetchone()
    assert row is not None and row[1] == 3 and row[2] is not None and "injected bug" in row[3]
    assert bytes(row[4]) == poison and _BuggyDispatcher.calls == 3
    listed = procs.run(settings, "quarantine", "list")
    assert listed.returncode == 0 and f"#{row[0]} quarantined" in listed.stdout and "injected bug" in listed.stdout
    replay = procs.run(settings, "quarantine", "replay", str(row[0]))
    assert replay.returncode == 0, replay.stderr
    again = read_topic(settings, topics.DEMAND, lambda rs: sum(r.value == poison for r in rs) >= 2)
    copies = [(r.partition, r.offset) for r in again if r.value == poison]
    assert len(copies) == 2 and (part, off) in copies
    assert conn.execute("SELECT replayed_at IS NOT NULL FROM quarantined_records WHERE quarantine_id = %s",
                        (row[0],)).fetchone()[0]
    assert f"#{row[0]}" not in procs.run(settings, "quarantine", "list").stdout  # replayed: not listed by default


def test_failure_count_survives_a_restart_and_outages_do_not_count(conn, unique):
    import psycopg

    ref = RecordRef(f"pz-{unique}", "t", 0, 5, None, b"x")
    assert not note_failure(conn, ref, RuntimeError("one"))
    assert not note_failure(conn, ref, RuntimeError("two"))
    calls = []

    def failing():
        calls.append(1)
        raise ValueError("three")
    # "restarted": the third failure quarantines at once, not three more
    assert run_guarded(conn, ref, failing) is False and len(calls) == 1

    outage = RecordRef(f"pz-{unique}", "t", 0, 6, None, b"y")

    def away():
        raise psycopg.OperationalError("connection refused")
    with pytest.raises(psycopg.OperationalError):
        run_guarded(conn, outage, away)
    assert conn.execute('SELECT count(*) FROM quarantined_records WHERE consumer = %s AND "offset" = 6',
                        (f"pz-{unique}",)).fetchone()[0] == 0
