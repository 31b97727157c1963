"""Property-based fuzz test PER CONSUMER on the real services (issue 10): generated bad records
(tests/poison/fuzz.py) interleaved with good ones. Each hypothesis example is one round: publish,
wait until every record is accounted for, then check that

* the service is still up;
* every good record was applied exactly as it would have been without the bad ones;
* every bad record is in that consumer's dead-letter / errors destination exactly once, with a reason
  (over MQTT at least once: a second copy only for a message the broker redelivered).

``VRESERVE_FUZZ_RECORDS`` (default 200) sets the records per consumer; each test prints
"fuzz <consumer>: N records (B bad, G good), crashes 0, lost 0".
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import pytest
from kafka import TopicPartition
from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN

from tests.dispatcher.helpers import make_region
from tests.poison.fuzz import GOOD, RECORDS, Template, records_for, rounds
from tests.poison.helpers import alive, log_of, produce, wait_for
from vreserve.mqtt import connect as mqtt_connect, new_client
from vreserve import topics
from vreserve.db import connect
from vreserve.schemas.common import format_ts, utc_now
from vreserve.schemas.dispatch import DispatchOrder, stable_id
from vreserve.schemas.readings import MAX_PAYLOAD_BYTES, MAX_READINGS_RECORD_BYTES, DeadLetter

pytestmark = [pytest.mark.services, pytest.mark.slow]
ROUND_TIMEOUT_S = 120


class Tail:
    """Everything on a topic from its start, read incrementally (no consumer group); ``parse``
    turns each record into what the test compares (once per record), None to skip it."""

    def __init__(self, settings, logical: str, parse=lambda r: r):
        self.parse = parse
        self.consumer = kafka_clients.consumer(settings, ADMIN, enable_auto_commit=False,
                                      group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
        name = settings.topic(logical)
        parts = [TopicPartition(name, p) for p in sorted(self.consumer.partitions_for_topic(name) or [])]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.records: list = []

    def poll(self) -> list:
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(x for x in map(self.parse, batch) if x is not None)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def _report(name: str, totals: Counter) -> None:
    line = (f"fuzz {name}: {totals['records']} records ({totals['bad']} bad, {totals['good']} good; "
            f"kinds {dict(sorted((k[5:], v) for k, v in totals.items() if k.startswith('kind:')))}), "
            f"crashes 0, lost 0")
    print(line)
    with open("/tmp/vreserve-fuzz-report.txt", "a") as f:
        f.write(line + "\n")


def _count(totals: Counter, items) -> None:
    for kind, _raw in items:
        totals["records"] += 1
        totals["good" if kind == GOOD else "bad"] += 1
        if kind != GOOD:
            totals[f"kind:{kind}"] += 1


# ------------------------------------------------------------------------------- stream worker
def test_fuzz_stream_worker(stream_settings, unique, tmp_path):
    from tests.stream.stream_helpers import StreamWorker, add_registry

    s = stream_settings
    site, material = f"fz{unique}-S1", f"fzm-{unique}"
    add_registry(s.pg_dsn, [(site, f"fz{unique}-g", "enterprise")], {material: "box"}, {(site, material): 100.0})
    now = utc_now()
    template = Template(
        {"v": 1, "site_id": site, "ts": format_ts(now), "seq": 0, "readings": [{"material": material, "qty": 1.0,
         "unit": "box"}], "received_at": format_ts(now), "mqtt_topic": topics.mqtt_stock_topic(site)},
        ("site_id", "ts", "received_at", "mqtt_topic"),
        ("v", "site_id", "ts", "seq", "readings", "received_at", "mqtt_topic"), MAX_READINGS_RECORD_BYTES,
        unknown_fields_ignored=True)
    worker = StreamWorker(s, tmp_path).start()
    letters = Tail(s, topics.STREAM_DEAD_LETTER, lambda r: DeadLetter.from_json(r.value))
    totals: Counter = Counter()
    seq = [0]
    try:
        def one_round(items):
            sent, goods = [], {}
            for kind, raw in items:
                if kind == GOOD:
                    seq[0] += 1
                    ts = now + timedelta(seconds=seq[0])
                    rec = {**template.record, "seq": seq[0], "ts": format_ts(ts),
                           "readings": [{"material": material, "qty": float(seq[0] * 3 % 997), "unit": "box"}]}
                    goods[seq[0]] = float(seq[0] * 3 % 997)
                    raw = json.dumps(rec).encode()
                sent.append((kind, raw))
            positions = produce(s, topics.READINGS, [(site.encode(), raw) for _k, raw in sent])
            bad_pos = {pos for (kind, _r), pos in zip(sent, positions) if kind != GOOD}

            def lettered() -> dict:
                found = {}
                for d in letters.poll():
                    pos = (d.context.get("partition"), d.context.get("offset"))
                    if pos in bad_pos:
                        found.setdefault(pos, []).append(d)
                return found

            def stored() -> dict:
                with connect(s.pg_dsn) as c:
                    return {r[0]: float(r[1]) for r in c.execute(
                        "SELECT seq, qty FROM stock_readings WHERE site_id = %s AND seq = ANY(%s)",
                        (site, list(goods))).fetchall()}
            wait_for(lambda: len(lettered()) == len(bad_pos) and len(stored()) == len(goods), ROUND_TIMEOUT_S,
                     "every record accounted for", step=0.5, alive=lambda: worker.proc.poll() is None
                     or pytest.fail(f"worker died:\n{worker.log_tail()}"))
            found = lettered()
            assert all(len(v) == 1 and v[0].reason for v in found.values())  # once each, with a reason
            assert stored() == goods                                        # exactly as sent
            _count(totals, sent)
        for items in rounds(records_for(template)):
            one_round(items)
        with connect(s.pg_dsn) as c:
            assert c.execute("SELECT count(*) FROM stock_readings WHERE site_id = %s", (site,)).fetchone()[0] \
                == totals["good"]  # nothing from a bad record got in
        assert worker.health()["status"] in ("ok", "degraded") and worker.proc.poll() is None
    finally:
        letters.close()
        worker.stop()
    _report("stream worker", totals)


# ---------------------------------------------------------------------------------- dispatcher
def test_fuzz_dispatcher(private, procs, unique):
    settings, conn = private
    region = f"fz{unique}"
    make_region(conn, region, n_central=1, n_cells=1, per_cell=1)
    at = format_ts(utc_now())
    templates = {
        topics.MODE: Template({"v": 1, "event_id": f"E-{unique}", "kind": "end", "region": region, "at": at,
                               "actor": "op", "reason": "over"}, ("event_id", "region", "at", "actor", "reason"),
                              ("v", "event_id", "kind", "region", "at", "actor", "reason"), 16 * 1024),
        topics.ORDER_STATUS: Template({"v": 1, "status_id": f"S-{unique}", "order_id": f"O-{unique}",
                                       "status": "accepted", "at": at, "qty": None, "reason": None},
                                      ("status_id", "order_id", "at"), ("v", "status_id", "order_id", "status", "at"),
                                      512 * 1024),
        topics.DEMAND: Template({"v": 1, "update_id": f"D-{unique}", "region": region, "rescue_centre": "RC-1",
                                 "material": "medicine", "period": 2, "qty": 5.0, "at": at},
                                ("update_id", "region", "rescue_centre", "material", "at"),
                                ("v", "update_id", "region", "rescue_centre", "material", "period", "qty", "at"),
                                512 * 1024),
    }
    p = procs.start(settings, "dispatch", "run", name="dispatcher")
    totals: Counter = Counter()
    n = [0]
    for logical, template in templates.items():  # the consumer's records shared by its three topics
        def one_round(items):
            sent, goods = [], {}
            for kind, raw in items:
                if kind == GOOD:
                    n[0] += 1
                    uid = f"good-{unique}-{n[0]}"
                    goods[uid] = float(n[0])
                    raw = json.dumps({**templates[topics.DEMAND].record, "update_id": uid,
                                      "qty": float(n[0])}).encode()
                sent.append((kind, raw))
            bads = [raw for kind, raw in sent if kind != GOOD]
            bad_pos = produce(settings, logical, [(b"k", raw) for raw in bads])
            produce(settings, topics.DEMAND, [(b"RC-1", raw) for kind, raw in sent if kind == GOOD])

            def accounted() -> bool:
                if logical == topics.MODE:
                    ids = [stable_id("MODE-BAD", f"{a}:{b}") for a, b in bad_pos]
                    got = conn.execute("SELECT count(*) FROM mode_events WHERE event_id = ANY(%s)"
                                       " AND error IS NOT NULL", (ids,)).fetchone()[0]
                else:
                    got = sum(conn.execute('SELECT count(*) FROM rejected_records WHERE consumer = %s AND topic = %s'
                                           ' AND partition = %s AND "offset" = %s AND reason <> %s',
                                           ("dispatcher", settings.topic(logical), a, b, "")).fetchone()[0]
                              for a, b in bad_pos)
                return got == len(bad_pos) and len(stored()) == len(goods)

            def stored() -> dict:
                return {r[0]: float(r[1]) for r in conn.execute(
                    "SELECT update_id, qty FROM demand_updates WHERE update_id = ANY(%s)", (list(goods),))}
            try:
                wait_for(accounted, ROUND_TIMEOUT_S, f"every {logical} record accounted for", step=0.5,
                         alive=lambda: alive(p))
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the dispatcher's log ends:\n{log_of(p)[-3000:]}") from None
            assert stored() == goods
            _count(totals, sent)
        for items in rounds(records_for(template, max(1, RECORDS // len(templates)))):
            one_round(items)
    alive(p)
    _report("dispatcher (mode, order-status, demand)", totals)


# ------------------------------------------------------------------------------ audit consumer
def test_fuzz_audit_consumer(settings, procs, conn, unique):
    from tests.poison.test_issue_records import _audit_world

    site, material = _audit_world(conn, unique)
    at = format_ts(utc_now())
    template = Template({"v": 1, "audit_id": f"A-{unique}", "site_id": site, "auditor": "inspector-7", "at": at,
                         "counts": [{"material": material, "counted_qty": 5.0, "unit": "box"}]},
                        ("audit_id", "site_id", "auditor", "at"), ("v", "audit_id", "site_id", "auditor", "at", "counts"),
                        512 * 1024)
    p = procs.start(settings, "audit", "consume", "--group", settings.group(f"supervision-fz-{unique}"), name="audit-consume")
    topic = settings.topic(topics.AUDITS)
    totals: Counter = Counter()
    n = [0]

    def one_round(items):
        sent, goods = [], {}
        for kind, raw in items:
            if kind == GOOD:
                n[0] += 1
                goods[f"good-{unique}-{n[0]}"] = 1
                raw = json.dumps({**template.record, "audit_id": f"good-{unique}-{n[0]}"}).encode()
            sent.append((kind, raw))
        positions = produce(settings, topics.AUDITS, [(site.encode(), raw) for _k, raw in sent])
        bad_ids = [f"{topic}:{a}:{b}" for (kind, _r), (a, b) in zip(sent, positions) if kind != GOOD]

        def accounted() -> bool:
            rejected = conn.execute("SELECT count(*) FROM audit_rejections WHERE rejection_id = ANY(%s)"
                                    " AND reason <> ''", (bad_ids,)).fetchone()[0]
            applied = conn.execute("SELECT count(*) FROM audits WHERE audit_id = ANY(%s)", (list(goods),)).fetchone()[0]
            return rejected == len(bad_ids) and applied == len(goods)
        wait_for(accounted, ROUND_TIMEOUT_S, "every audit record accounted for", step=0.5, alive=lambda: alive(p))
        _count(totals, sent)
    for items in rounds(records_for(template)):
        one_round(items)
    alive(p)
    assert conn.execute("SELECT count(*) FROM audits WHERE site_id = %s", (site,)).fetchone()[0] == totals["good"]
    _report("audit consumer", totals)


# ------------------------------------------------------------------------ logistics simulator
def _status_or_none(record):
    """The order-status topic also holds the dispatcher fuzz test's junk: skip what is not a status."""
    from vreserve.schemas.common import SchemaError
    from vreserve.schemas.dispatch import OrderStatus

    try:
        return OrderStatus.from_json(record.value)
    except SchemaError:
        return None


def test_fuzz_logistics_simulator(settings, unique):
    from simulators.logistics import LogisticsSimulator, Timing

    now = utc_now()
    good = DispatchOrder(f"O-{unique}", f"P-{unique}", f"EM-{unique}", "r", 1, "delivery", "DC-1", "RC-1",
                         "medicine", 5.0, "box", now)
    template = Template(good.to_payload(), ("order_id", "plan_id", "emergency_id", "region", "origin",
                                            "destination", "created_at"),
                        tuple(k for k in good.to_payload()), 512 * 1024)
    sim = LogisticsSimulator(settings, Timing(0.05, 0.05, 0.05, 0.0, 0.0, 5.0), group=settings.group(f"logistics-fz-{unique}"),
                             client_id=f"fz-{unique}", say=lambda m: None)
    done = threading.Event()
    errors: list = []

    def run():
        try:
            sim.run(until=done.is_set)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    letters = Tail(settings, topics.LOGISTICS_DEAD_LETTER, lambda r: DeadLetter.from_json(r.value))
    statuses = Tail(settings, topics.ORDER_STATUS, _status_or_none)
    totals: Counter = Counter()
    n = [0]

    def up() -> None:
        if errors or not t.is_alive():
            pytest.fail(f"logistics simulator stopped: {errors}")
    try:
        def one_round(items):
            sent, goods = [], set()
            for kind, raw in items:
                if kind == GOOD:
                    n[0] += 1
                    oid = f"O-{unique}-{n[0]}"
                    goods.add(oid)
                    raw = json.dumps({**template.record, "order_id": oid}).encode()
                sent.append((kind, raw))
            positions = produce(settings, topics.DISPATCH_ORDERS, [(b"RC-1", raw) for _k, raw in sent])
            bad_pos = {pos for (kind, _r), pos in zip(sent, positions) if kind != GOOD}

            def accounted() -> bool:
                lettered = Counter((d.context["partition"], d.context["offset"]) for d in letters.poll())
                delivered = {st.order_id for st in statuses.poll() if st.status == "delivered"}
                return all(lettered[pos] == 1 for pos in bad_pos) and goods <= delivered
            wait_for(accounted, ROUND_TIMEOUT_S, "every dispatch record accounted for", step=0.3, alive=up)
            _count(totals, sent)
        for items in rounds(records_for(template)):
            one_round(items)
        up()
    finally:
        done.set()
        t.join(30)
        letters.close()
        statuses.close()
    _report("logistics simulator", totals)


# --------------------------------------------------------------------------------------- bridge
def test_fuzz_bridge(settings, unique):

    from ingest.bridge import Bridge, BridgeConfig
    from vreserve.registry_generate import generate_registry
    from vreserve.registry_store import store_registry
    from vreserve.schemas.readings import ReadingBatch

    reg = generate_registry(1, seed=5, id_prefix=f"fz{unique}-")
    with connect(settings.pg_dsn) as c:
        store_registry(c, reg)
    site = next(iter(reg.sites))
    material = next(iter(reg.sites[site].materials))
    unit = reg.materials[material].unit
    template = Template({"v": 1, "site_id": site, "ts": format_ts(utc_now()), "seq": 0,
                         "readings": [{"material": material, "qty": 1.0, "unit": unit}]},
                        ("site_id", "ts"), ("v", "site_id", "ts", "seq", "readings"), MAX_PAYLOAD_BYTES,
                        unknown_fields_ignored=True, empty_is_clear=True)
    bridge = Bridge(settings, BridgeConfig(client_id=f"fz-bridge-{unique}"))
    bridge.start()
    client = new_client(settings.mqtt, f"fz-pub-{unique}")
    mqtt_connect(client, settings.mqtt)
    client.loop_start()
    letters = Tail(settings, topics.READINGS_DEAD_LETTER,
                   lambda r: DeadLetter.from_json(r.value) if r.key == site.encode() else None)
    forwarded = Tail(settings, topics.READINGS, lambda r: ReadingBatch.from_json(r.value) if r.key == site.encode() else None)
    totals: Counter = Counter()
    seq = [0]
    bad_sent: Counter = Counter()
    goods: dict[int, float] = {}
    mqtt_topic = topics.mqtt_stock_topic(site)
    try:
        def one_round(items):
            sent = []
            for kind, raw in items:
                if kind == GOOD:
                    seq[0] += 1
                    goods[seq[0]] = float(seq[0] % 500)
                    raw = json.dumps({**template.record, "seq": seq[0], "ts": format_ts(utc_now()),
                                      "readings": [{"material": material, "qty": goods[seq[0]], "unit": unit}]}).encode()
                else:
                    bad_sent[raw] += 1
                sent.append((kind, raw))
                client.publish(mqtt_topic, raw, qos=1).wait_for_publish(10)

            def accounted() -> bool:
                got = Counter(d.payload for d in letters.poll() if d.mqtt_topic == mqtt_topic)
                fw = {b.report.seq: b.report.readings[0].qty for b in forwarded.poll()}
                diff["missing"] = [(len(p), p[:80]) for p in (bad_sent - got)]
                diff["extra"] = [(len(p), p[:80]) for p in (got - bad_sent)]
                diff["goods"] = (sorted(set(goods) - set(fw))[:10], {k: v for k, v in fw.items() if goods.get(k) != v})
                # MQTT is at-least-once: a message redelivered after a reconnect may be dead-lettered
                # twice; never more copies than the bridge saw redeliveries, never one missing.
                extra = sum((got - bad_sent).values())
                return not (bad_sent - got) and extra <= bridge.counters.redelivered and fw == goods
            diff: dict = {}
            try:
                wait_for(accounted, ROUND_TIMEOUT_S, "every MQTT message accounted for", step=0.3, alive=bridge.check)
            except AssertionError as err:
                raise AssertionError(f"{err}: dead letters missing {diff['missing'][:5]}, unexpected "
                                     f"{diff['extra'][:5]}; goods missing / wrong {diff['goods']}; {bridge.counters}") from None
            _count(totals, sent)
        for items in rounds(records_for(template)):
            one_round(items)
        bridge.check()
        c = bridge.counters
        wait_for(lambda: c.in_flight == 0, 60, "redelivered copies to drain", alive=bridge.check)
        assert c.received == c.forwarded + c.dead_lettered
    finally:
        client.loop_stop()
        client.disconnect()
        letters.close()
        forwarded.close()
        bridge.stop(drain_timeout_s=5, end_mqtt_session=True)
    _report("bridge", totals)
