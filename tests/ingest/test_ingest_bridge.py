"""The bridge on real Mosquitto and Kafka: round trip in order, dead letters with reasons, ACL."""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import pytest

from ingest.bridge import Bridge, BridgeConfig, share_topic
from vreserve.site_credentials import provision_site_credentials, remove_site_credentials
from simulators.fleet import Fleet
from vreserve import topics
from vreserve.schemas.readings import DeadLetter, ReadingBatch

pytestmark = pytest.mark.services


@pytest.fixture
def bridge(settings, unique):
    b = Bridge(settings, BridgeConfig(client_id=f"vr-test-bridge-{unique}", linger_ms=5))
    b.start()
    yield b
    b.stop(end_mqtt_session=True)


def _wait(cond, timeout: float, what: str, check=None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if check:
            check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_round_trip_all_readings_in_per_site_order(settings, registry, bridge, topic_reader) -> None:
    sites = list(registry.sites)
    fleet = Fleet(settings, registry, interval_s=0.5, auth="per-site", seed=1)
    try:
        fleet.start()
        assert fleet.wait_connected(20), "fleet did not connect"
        time.sleep(4)
    finally:
        fleet.stop(end_sessions=True)
        remove_site_credentials(settings, sites)
    expected = {s: list(fleet.seq_range(s)) for s in sites}
    total = sum(len(v) for v in expected.values())
    assert total >= 100 and all(expected.values())
    ours = set(sites)
    _wait(lambda: bridge.counters.in_flight == 0 and bridge.counters.forwarded >= total, 30, "bridge to forward", bridge.check)

    def mine(records):
        return [r for r in records if r.key.decode() in ours]

    records = topic_reader(settings, topics.READINGS, lambda rs: len(mine(rs)) >= total)
    seen = defaultdict(list)
    for r in mine(records):
        batch = ReadingBatch.from_json(r.value)
        assert r.key.decode() == batch.report.site_id
        seen[batch.report.site_id].append(batch.report.seq)
        assert {x.material for x in batch.report.readings} == set(registry.sites[batch.report.site_id].materials)
    # Every reading arrived exactly once here (no faults), and each site's records are in seq order.
    assert dict(seen) == expected
    # Other tests' sites may still be publishing on the shared broker (MQTT topics carry no test
    # prefix): every message the bridge took is forwarded or dead-lettered (in_flight = received -
    # forwarded - dead_lettered drains to 0; a message stuck in the bridge keeps it above).
    _wait(lambda: bridge.counters.in_flight == 0, 10, "every message taken to be forwarded or dead-lettered")


BAD = {
    "truncated": (None, b'{"v":1,"site_id":"@","ts":"2026-'),
    "wrong_types": (None, b'{"v":1,"site_id":"@","ts":"@ts","seq":"1","readings":[]}'),
    "nan": (None, b'{"v":1,"site_id":"@","ts":"@ts","seq":1,"readings":[{"material":"medicine","qty":NaN,"unit":"box"}]}'),
    "negative": (None, b'{"v":1,"site_id":"@","ts":"@ts","seq":1,"readings":[{"material":"medicine","qty":-3,"unit":"box"}]}'),
    "unknown_material": (None, b'{"v":1,"site_id":"@","ts":"@ts","seq":1,"readings":[{"material":"gold","qty":1,"unit":"g"}]}'),
    "wrong_unit": (None, b'{"v":1,"site_id":"@","ts":"@ts","seq":1,"readings":[{"material":"medicine","qty":1,"unit":"kg"}]}'),
    "binary": (None, bytes(range(256)) * 2),
    "blank": (None, b" "),  # (an empty message clears a retained report: acknowledged, not a dead letter)
    "not_object": (None, b'"just a string"'),
    "future": (None, b'{"v":1,"site_id":"@","ts":"2099-01-01T00:00:00Z","seq":1,"readings":[{"material":"medicine","qty":1,"unit":"box"}]}'),
    "oversized": (None, b'{"v":1,"site_id":"@","pad":"' + b"x" * 100_000 + b'"}'),
    "wrong_site_in_topic": ("other", b'{"v":1,"site_id":"@","ts":"@ts","seq":1,"readings":[{"material":"medicine","qty":1,"unit":"box"}]}'),
    "unknown_site": ("ghost", b'{"v":1,"site_id":"@ghost","ts":"@ts","seq":1,"readings":[{"material":"medicine","qty":1,"unit":"box"}]}'),
}


def test_bad_payloads_are_dead_lettered_with_reasons(settings, registry, bridge, service_client, unique, topic_reader) -> None:
    site_a, site_b = list(registry.sites)[:2]
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode()
    client = service_client()
    sent: dict[bytes, str] = {}
    for name, (topic_site, raw) in BAD.items():
        site = {None: site_a, "other": site_b, "ghost": f"t{unique}-ghost"}[topic_site]
        raw = raw.replace(b"@ts", ts).replace(b"@ghost", f"t{unique}-ghost".encode()).replace(b'"@"', f'"{site_a}"'.encode())
        client.publish(topics.mqtt_stock_topic(site), raw, qos=1).wait_for_publish(10)
        sent[raw] = name
    good = json.dumps({"v": 1, "site_id": site_a, "ts": ts.decode(), "seq": 99,
                       "readings": [{"material": next(iter(registry.sites[site_a].materials)), "qty": 1,
                                     "unit": registry.materials[next(iter(registry.sites[site_a].materials))].unit}]}).encode()
    client.publish(topics.mqtt_stock_topic(site_a), good, qos=1).wait_for_publish(10)

    def ours(records):
        return [DeadLetter.from_json(r.value) for r in records if DeadLetter.from_json(r.value).payload in sent]

    records = topic_reader(settings, topics.READINGS_DEAD_LETTER, lambda rs: len({d.payload for d in ours(rs)}) >= len(sent))
    letters = {d.payload: d for d in ours(records)}
    missing = [sent[p] for p in sent if p not in letters]
    assert not missing, f"not dead-lettered: {missing}"
    expect = {"truncated": "not valid JSON", "wrong_types": "seq must be", "nan": "non-finite number NaN",
              "negative": "negative", "unknown_material": "unknown material 'gold'", "wrong_unit": "catalogue counts it in",
              "binary": "not UTF-8", "blank": "not valid JSON", "not_object": "must be a JSON object",
              "future": "in the future", "oversized": "byte limit", "wrong_site_in_topic": "differs from the topic's site",
              "unknown_site": "unknown site"}
    for payload, letter in letters.items():
        name = sent[payload]
        assert expect[name] in letter.reason, (name, letter.reason)
        assert letter.mqtt_topic.startswith("vr/v1/sites/") and letter.source == "mqtt" and letter.at
    # The bridge stayed up, forwarded the good one, and its books balance.
    forwarded = topic_reader(settings, topics.READINGS, lambda rs: any(r.value and b'"seq":99' in r.value and site_a.encode() in r.value for r in rs))
    assert any(ReadingBatch.from_json(r.value).report.seq == 99 and r.key.decode() == site_a for r in forwarded)
    bridge.check()
    _wait(lambda: bridge.counters.in_flight == 0, 10, "in-flight to drain")
    c = bridge.counters
    assert c.received == c.forwarded + c.dead_lettered and c.dead_lettered >= len(sent)


def test_acl_confines_a_site_to_its_own_topics(settings, unique, service_client) -> None:
    a, b = f"t{unique}-acl-a", f"t{unique}-acl-b"
    creds = provision_site_credentials(settings, [a, b])
    try:
        got: list = []
        watcher = service_client()
        watcher.on_message = lambda c, u, m: got.append((m.topic, m.payload))
        watcher.subscribe([(topics.mqtt_stock_topic(a), 1), (topics.mqtt_stock_topic(b), 1)])
        time.sleep(0.5)
        site_a = service_client(a, creds[a])
        assert site_a.connect_rc is not None and not site_a.connect_rc.is_failure
        site_a.publish(topics.mqtt_stock_topic(b), b"forged by a", qos=1).wait_for_publish(10)
        site_a.publish(topics.mqtt_stock_topic(a), b"own reading", qos=1).wait_for_publish(10)
        # A site may not read another site's pick commands either.
        granted: list = []
        site_a.on_subscribe = lambda c, u, mid, rcs, p: granted.extend(rcs)
        site_a.subscribe(topics.mqtt_pick_topic(b), qos=1)
        deadline = time.monotonic() + 5
        while (not got or not granted) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert (topics.mqtt_stock_topic(a), b"own reading") in got
        assert not [g for g in got if g[1] == b"forged by a"], "the broker let site a publish as site b"
        # The SUBSCRIBE is refused (see below); prove nothing arrives by publishing a command to b.
        received_cmd: list = []
        site_a.on_message = lambda c, u, m: received_cmd.append(m.topic)
        watcher.publish(topics.mqtt_pick_topic(b), b'{"v":1}', qos=1).wait_for_publish(10)
        time.sleep(0.5)
        assert received_cmd == [] and granted and granted[0].is_failure
        wrong = service_client(a, "not-the-password")
        assert wrong.connect_rc is not None and wrong.connect_rc.is_failure
    finally:
        remove_site_credentials(settings, [a, b])


@pytest.mark.slow
def test_faulty_gateway_fleet_through_the_bridge(settings, registry, bridge, topic_reader) -> None:
    from simulators.fleet import Faults

    sites = set(registry.sites)
    faults = Faults(duplicates=0.1, out_of_order=0.1, malformed=0.1, stuck=0.05, spike=0.05)
    fleet = Fleet(settings, registry, interval_s=0.4, auth="gateway", gateways=2, faults=faults, seed=5)
    try:
        fleet.start()
        assert fleet.wait_connected(20)
        time.sleep(3)
        fleet.check()
    finally:
        fleet.stop()
    c = fleet.counters
    assert c.duplicates_sent and c.out_of_order_sent and c.malformed_sent
    records = topic_reader(settings, topics.READINGS,
                           lambda rs: sum(1 for r in rs if r.key.decode() in sites) >= c.messages_sent, timeout=30)
    ours = [ReadingBatch.from_json(r.value).report for r in records if r.key.decode() in sites]
    # Every stock message the fleet sent (duplicates included) is in Kafka; every seq it made is
    # there except the ones still held back for out-of-order delivery when it stopped.
    assert len(ours) == c.messages_sent
    seqs = {(r.site_id, r.seq) for r in ours}
    made = {(s, q) for s in sites for q in fleet.seq_range(s)}
    held = sum(1 for st in fleet._sites.values() if st.held is not None)
    assert seqs <= made and len(made - seqs) == held
    letters = topic_reader(settings, topics.READINGS_DEAD_LETTER,
                           lambda rs: sum(1 for r in rs if r.key and r.key.decode() in sites) >= c.malformed_sent, timeout=30)
    assert sum(1 for r in letters if r.key and r.key.decode() in sites) == c.malformed_sent


def _suback(client, topic_filter: str, timeout: float = 10.0) -> list:
    """Subscribe and return the SUBACK's reason codes (the broker's answer, not an assumption)."""
    got: list = []
    client.on_subscribe = lambda c, u, mid, rcs, p: got.extend(rcs)
    client.subscribe(topic_filter, qos=1)
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got, f"no SUBACK for {topic_filter!r}"
    return got


def test_a_site_may_subscribe_only_to_its_own_commands(settings, unique, service_client) -> None:
    """Issue 10 s.2: every other filter, every $share/... filter included, is refused at SUBSCRIBE."""
    a, b = f"t{unique}-sub-a", f"t{unique}-sub-b"
    creds = provision_site_credentials(settings, [a, b])
    try:
        site_a = service_client(a, creds[a])
        assert site_a.connect_rc is not None and not site_a.connect_rc.is_failure
        own = topics.mqtt_pick_topic(a)
        for allowed in (own, own.rsplit("/", 1)[0] + "/#"):
            assert not _suback(site_a, allowed)[0].is_failure, allowed
        hostile = [
            share_topic(settings),
            topics.MQTT_STOCK_SHARED,
            f"$share/vr-bridge/{topics.mqtt_stock_topic(b)}",
            f"$share/own/{own}",
            "$share/x/#",
            topics.mqtt_pick_topic(b),
            topics.mqtt_stock_topic(a),
            topics.mqtt_stock_topic("+"),
            "vr/v1/sites/+/commands/#",
            "#",
            "$SYS/#",
            "$CONTROL/dynamic-security/v1/response",
        ]
        for topic_filter in hostile:
            codes = _suback(site_a, topic_filter)
            assert codes[0].is_failure, f"site {a} was granted {topic_filter!r}: {codes}"
        # Re-provisioning an existing site replaces its password: the old one no longer logs in.
        new = provision_site_credentials(settings, [a])
        assert service_client(a, creds[a]).connect_rc.is_failure
        assert not service_client(a, new[a]).connect_rc.is_failure
    finally:
        remove_site_credentials(settings, [a, b])
    gone = service_client(b, creds[b])
    assert gone.connect_rc is not None and gone.connect_rc.is_failure, "a removed site still logs in"


def test_a_site_joining_the_bridge_group_steals_no_readings(settings, registry, bridge, service_client, topic_reader) -> None:
    """Issue 10 s.2: with a hostile site trying the bridge's $share group, the bridge gets 20 of 20."""
    honest, hostile = list(registry.sites)[:2]
    creds = provision_site_credentials(settings, [honest, hostile])
    try:
        thief = service_client(hostile, creds[hostile])
        assert not thief.connect_rc.is_failure
        stolen: list = []
        thief.on_message = lambda c, u, m: stolen.append(m.topic)
        assert _suback(thief, share_topic(settings))[0].is_failure
        site = service_client(honest, creds[honest])
        material = next(iter(registry.sites[honest].materials))
        unit = registry.materials[material].unit
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for seq in range(1, 21):
            body = {"v": 1, "site_id": honest, "ts": ts, "seq": 1000 + seq,
                    "readings": [{"material": material, "qty": seq, "unit": unit}]}
            site.publish(topics.mqtt_stock_topic(honest), json.dumps(body), qos=1).wait_for_publish(10)

        def mine(records):
            return {ReadingBatch.from_json(r.value).report.seq for r in records if r.key.decode() == honest}

        got = mine(topic_reader(settings, topics.READINGS, lambda rs: len(mine(rs)) >= 20, timeout=30))
        assert got == set(range(1001, 1021)), f"bridge forwarded {len(got)} of 20"
        assert stolen == []
    finally:
        remove_site_credentials(settings, [honest, hostile])


def test_credentials_file_is_private_and_round_trips(tmp_path) -> None:
    from vreserve.site_credentials import read_credentials, write_credentials

    path = tmp_path / "creds.yaml"
    write_credentials({"s1": "pw1"}, path)
    assert read_credentials(path) == {"s1": "pw1"} and (path.stat().st_mode & 0o777) == 0o600


def test_site_secret_command_rotates_without_printing_it(settings, unique, service_client, tmp_path) -> None:
    """`vreserve ingest site-secret` writes the password to a 0600 file only; the old one stops working."""
    import os
    import subprocess
    import sys

    from vreserve.site_credentials import read_credentials

    site = f"t{unique}-rot"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_MQTT_URL=settings.mqtt_url, VR_STATE_DIR=str(settings.state_dir), VR_MQTT_CA_FILE=settings.mqtt_ca_file,
               VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_PG_DSN=settings.pg_dsn)
    out = tmp_path / "creds.yaml"
    try:
        passwords = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-m", "vreserve.cli", "ingest", "site-secret", site, "--out", str(out)],
                                  env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            passwords.append(read_credentials(out)[site])
            assert passwords[-1] not in proc.stdout + proc.stderr
        assert passwords[0] != passwords[1]
        assert service_client(site, passwords[0]).connect_rc.is_failure
        assert not service_client(site, passwords[1]).connect_rc.is_failure
    finally:
        removed = subprocess.run([sys.executable, "-m", "vreserve.cli", "ingest", "site-remove", site], env=env,
                                 capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert service_client(site, passwords[-1]).connect_rc.is_failure
    records = _audit_records(settings, site)
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("site-logins.set", "ok"), ("site-logins.set", "ok"), ("site-logins.remove", "ok")]
    assert {r["actor"] for r in records} == {cli_actor()} and {r["source"] for r in records} == {"cli"}
    _assert_no_secret(settings, passwords)


def test_rotating_a_site_secret_ends_its_session_and_the_new_password_logs_in(settings, unique, service_client) -> None:
    """What a site rotation costs the device, measured rather than assumed: Mosquitto's
    dynamic-security plugin (2.0.x) disconnects a client whose password is changed, so a connected
    site is dropped and must log in again with its new password (its old one is refused). Not
    hitless: docs/security.md says so."""
    site = f"t{unique}-hit"
    old = provision_site_credentials(settings, [site])[site]
    try:
        client = service_client(site, old)
        assert not client.connect_rc.is_failure
        dropped = threading.Event()
        client.on_disconnect = lambda *_args: dropped.set()
        new = provision_site_credentials(settings, [site])[site]
        assert dropped.wait(10), "the plugin no longer drops a site on rotation: update docs/security.md"
        assert service_client(site, old).connect_rc.is_failure
        assert not service_client(site, new).connect_rc.is_failure
    finally:
        remove_site_credentials(settings, [site])


def test_a_site_rotates_without_being_cut_off_through_a_second_login(settings, unique, service_client,
                                                                      tmp_path) -> None:
    """`vreserve ingest site-rotate SITE` then `site-retire-login OLD`: the connected site keeps its
    session through the rotation and publishes; the new login (SITE/2) has exactly the site's rights
    (its own commands, not another site's); retiring the old login ends the old session, and the
    old password is refused from then on."""
    import os
    import subprocess
    import sys

    import yaml

    site, other = f"t{unique}-ov", f"t{unique}-ov-b"
    env = {**os.environ, "VR_MQTT_URL": settings.mqtt_url, "VR_PG_DSN": settings.pg_dsn}
    cli = [sys.executable, "-m", "vreserve.cli", "ingest"]
    old = provision_site_credentials(settings, [site, other])[site]
    try:
        first = service_client(site, old)
        assert not first.connect_rc.is_failure
        dropped = threading.Event()
        first.on_disconnect = lambda *_args: dropped.set()
        out = tmp_path / "login.yaml"
        done = subprocess.run([*cli, "site-rotate", site, "--out", str(out)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        login = yaml.safe_load(out.read_text())["mqtt_login"]
        assert login["username"] == f"{site}/2" and login["password"] not in done.stdout + done.stderr
        assert (out.stat().st_mode & 0o777) == 0o600
        assert not dropped.wait(3), "the rotation cut the connected site off"
        sent = first.publish(topics.mqtt_stock_topic(site), b"{}", qos=1)
        sent.wait_for_publish(5)
        assert sent.is_published()  # the old session still answers
        second = service_client(login["username"], login["password"])
        assert not second.connect_rc.is_failure
        assert not _suback(second, topics.mqtt_pick_topic(site))[0].is_failure
        assert _suback(second, topics.mqtt_pick_topic(other))[0].is_failure
        again = subprocess.run([*cli, "site-rotate", site, "--out", str(tmp_path / "x.yaml")], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "already has two logins" in again.stderr
        retired = subprocess.run([*cli, "site-retire-login", site], env=env, capture_output=True, text=True, timeout=60)
        assert retired.returncode == 0, retired.stderr
        assert dropped.wait(10), "the retired login's session was not ended"
        assert service_client(site, old).connect_rc.is_failure
        assert not service_client(login["username"], login["password"]).connect_rc.is_failure
        last = subprocess.run([*cli, "site-retire-login", login["username"]], env=env, capture_output=True, text=True,
                              timeout=60)
        assert last.returncode != 0 and "only login" in last.stderr
    finally:
        remove_site_credentials(settings, [site, other])
    assert service_client(f"{site}/2", login["password"]).connect_rc.is_failure  # site-remove took both logins
    records = _audit_records(settings, site)
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("site-logins.rotate", "ok"), ("site-logins.rotate", "refused"), ("site-logins.retire", "ok"),
        ("site-logins.retire", "refused")]
    assert records[0]["detail"] == {"new_login": f"{site}/2"}
    assert "already has two logins" in records[1]["detail"]["reason"]
    assert records[2]["detail"]["login"] == site and records[3]["detail"]["login"] == f"{site}/2"
    assert "only login" in records[3]["detail"]["reason"]
    assert {r["actor"] for r in records} == {cli_actor()}
    _assert_no_secret(settings, [old, login["password"]])


# ------------------------------------------------------------ the login commands' audit records
def cli_actor() -> str:
    """The actor every operator CLI command writes: the shell user (vreserve.operations.cli_identity)."""
    import getpass

    return f"os-user:{getpass.getuser()}"


def _audit_records(settings, target: str) -> list[dict]:
    """The audit trail's records for one target, oldest first (read as the test database's owner)."""
    from vreserve import auditlog
    from vreserve.db import connect as db_connect

    with db_connect(settings.pg_dsn, autocommit=True) as conn:
        assert auditlog.verify(conn).ok  # the commands extend the one hash chain
        rows = conn.execute("SELECT seq, actor, source, action, target, outcome, status, detail FROM audit_log"
                            " WHERE target = %s ORDER BY seq", (target,)).fetchall()
    keys = ("seq", "actor", "source", "action", "target", "outcome", "status", "detail")
    return [{**dict(zip(keys, r)), "detail": json.loads(r[-1])} for r in rows]


def _assert_no_secret(settings, secrets_: list[str]) -> None:
    """No password appears anywhere in the audit trail (every column of every row, as text)."""
    from vreserve.db import connect as db_connect

    with db_connect(settings.pg_dsn, autocommit=True) as conn:
        text = "\n".join(r[0] for r in conn.execute("SELECT audit_log::text FROM audit_log").fetchall())
    assert text and not [s for s in secrets_ if s in text]


def _cli_env(settings, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_MQTT_URL=settings.mqtt_url, VR_STATE_DIR=str(settings.state_dir),
               VR_MQTT_CA_FILE=settings.mqtt_ca_file, VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               VR_PG_DSN=settings.pg_dsn, VR_TOPIC_PREFIX=settings.topic_prefix)
    if settings.secrets_dir:
        env["VR_SECRETS_DIR"] = str(settings.secrets_dir)
    env.update(extra)
    return env


def _vreserve(env: dict[str, str], *args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vreserve.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_registry_load_with_mqtt_credentials_records_each_site_login(settings, unique, service_client,
                                                                     tmp_path) -> None:
    """`registry load --mqtt-credentials`: one ok record per site whose login it made, no password in
    the trail or the output, and the logins work."""
    from vreserve.registry import write_registry
    from vreserve.registry_generate import generate_registry
    from vreserve.site_credentials import read_credentials

    reg = generate_registry(3, seed=3, id_prefix=f"t{unique}-rl-")
    write_registry(reg, tmp_path / "reg.yaml")
    creds_file = tmp_path / "creds.yaml"
    try:
        done = _vreserve(_cli_env(settings), "registry", "load", str(tmp_path / "reg.yaml"),
                         "--mqtt-credentials", str(creds_file))
        assert done.returncode == 0, done.stderr
        creds = read_credentials(creds_file)
        assert set(creds) == set(reg.sites)
        assert not [p for p in creds.values() if p in done.stdout + done.stderr]
        for site in reg.sites:
            records = _audit_records(settings, site)
            assert [(r["action"], r["outcome"], r["actor"], r["detail"]) for r in records] == [
                ("site-logins.set", "ok", cli_actor(), {"via": "registry.load"})]
        assert not service_client(next(iter(creds)), creds[next(iter(creds))]).connect_rc.is_failure
        _assert_no_secret(settings, list(creds.values()))
    finally:
        remove_site_credentials(settings, list(reg.sites))


def test_end_session_and_a_broker_failure_are_recorded(settings, unique) -> None:
    """`ingest end-session` writes an ok record for the client id; a command the broker cannot serve
    (nothing listens where it is sent) writes an error record and says so."""
    from urllib.parse import urlsplit

    client_id = f"vr-test-gone-{unique}"
    ended = _vreserve(_cli_env(settings), "ingest", "end-session", "--client-id", client_id)
    assert ended.returncode == 0, ended.stderr
    [record] = _audit_records(settings, client_id)
    assert (record["action"], record["outcome"], record["actor"]) == ("bridge-sessions.end", "ok", cli_actor())

    site = f"t{unique}-bad"
    url = urlsplit(settings.mqtt_url)
    nowhere = url._replace(netloc=url.netloc.replace(f":{url.port}", ":1")).geturl()
    failed = _vreserve(_cli_env(settings, VR_MQTT_URL=nowhere), "ingest", "site-remove", site)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "cannot be reached" in failed.stderr
    [record] = _audit_records(settings, site)
    assert (record["action"], record["outcome"], record["status"]) == ("site-logins.remove", "error", 502)
    assert "cannot be reached" in record["detail"]["reason"]


def test_an_unreachable_audit_trail_refuses_before_the_broker_is_touched(settings, unique, tmp_path) -> None:
    """With the database out of reach, `site-secret` changes nothing in the broker and says so."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.site_credentials import site_logins_present

    site = f"t{unique}-nodb"
    dead = make_conninfo(**{**conninfo_to_dict(settings.pg_dsn), "host": "127.0.0.1", "port": "1"})
    refused = _vreserve(_cli_env(settings, VR_PG_DSN=dead), "ingest", "site-secret", site,
                        "--out", str(tmp_path / "c.yaml"))
    assert refused.returncode != 0 and "nothing was changed in the broker" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert site_logins_present(settings, site) == [] and not (tmp_path / "c.yaml").exists()


def test_a_record_lost_after_the_broker_change_is_reported_not_swallowed(settings, unique) -> None:
    """The database goes away between the check and the record (its connection is ended while the
    broker change runs): the command fails and says the change was made but is not recorded."""
    import click

    from ingest.cli import _audited_broker_change
    from vreserve import db_access
    from vreserve.db import connect as db_connect
    from vreserve.mqtt import end_session

    client_id = f"vr-test-lost-{unique}"
    with pytest.raises(click.ClickException) as caught:
        with _audited_broker_change(settings, "bridge-sessions.end", [client_id]):
            end_session(settings.mqtt, client_id)
            with db_connect(settings.pg_dsn, autocommit=True) as admin:
                ended = admin.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                                      " WHERE usename = %s AND datname = current_database()",
                                      (db_access.API,)).fetchone()[0]
            assert ended >= 1
    assert "WAS made in the broker but is NOT in the audit trail" in caught.value.message
    assert _audit_records(settings, client_id) == []
