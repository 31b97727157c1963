"""Explained vs unexplained stock changes on the real pipeline (issue 16; issue 10's "jump alerts
from our own dispatches"):

simulated sites --MQTT--> bridge --Kafka--> stream worker --> PostgreSQL, with pick orders carried
by the logistics simulator (pick commands over MQTT, the sites' answers, order-status on Kafka)
and recorded by the dispatcher's own ``apply_status``.

Honest sites are picked from (more than half of their stock, which the old jump rule flagged),
replenished and consumed with declared movements, while their sensors duplicate, reorder and
garble messages: no finding. Each injected fault is caught: a spiking sensor (a rise with no
receipt), a stuck sensor that hides a pick, a site that answers picks it never hands over, goods
gone with no pick, stock reported above the site's physical capacity. The delay from the faulty reading to its alert is printed.
"""
from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone

import pytest
from kafka import TopicPartition
from vreserve import kafka_clients
from vreserve.kafka_access import ADMIN

from dispatcher.book import apply_status
from ingest.bridge import Bridge, BridgeConfig
from vreserve.registry_generate import generate_registry
from vreserve.registry_store import store_registry
from simulators.fleet import Faults, Fleet
from simulators.logistics import LogisticsSimulator, Timing
from vreserve import topics
from vreserve.db import connect
from vreserve.reconcile import FINDING_KINDS, Movement, declare_movement
from vreserve.schemas.dispatch import DispatchOrder, OrderStatus

SETTLE = ("--aggregate-interval", "1", "--settle", "2", "--batch-within", "0.1", "--stale-intervals", "30")


class StatusApplier:
    """The dispatcher's part: order-status records -> ``apply_status`` (its own function)."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.applied = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        name = self.settings.topic(topics.ORDER_STATUS)
        consumer = kafka_clients.consumer(self.settings, ADMIN, group_id=None,
                                 enable_auto_commit=False)
        parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        with connect(self.settings.pg_dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                for recs in consumer.poll(timeout_ms=200).values():
                    for r in recs:
                        apply_status(conn, OrderStatus.from_json(r.value))
                        self.applied += 1
        consumer.close()


def _place_order(conn, producer, settings, emergency_id: str, n: int, site: str, material: str, qty: float,
                 unit: str) -> str:
    """As the dispatcher does: the order row first, then the record on the orders topic."""
    now = datetime.now(timezone.utc)
    o = DispatchOrder(order_id=f"O-{emergency_id}-{n}", plan_id=f"P-{emergency_id}", emergency_id=emergency_id,
                      region="r", period=1, leg="supply", origin=site, destination="DC1", material=material,
                      qty=qty, unit=unit, created_at=now)
    conn.execute("INSERT INTO dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                 " material_id, qty, unit, created_at, status_at) VALUES (%s,%s,%s,1,'supply',%s,'DC1',%s,%s,%s,%s,%s)",
                 (o.order_id, o.plan_id, emergency_id, site, material, qty, unit, now, now))
    producer.send(settings.topic(topics.DISPATCH_ORDERS), key=b"DC1", value=o.to_json())
    return o.order_id


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _findings(dsn: str, prefix: str) -> list[tuple]:
    with connect(dsn) as conn:
        return conn.execute(
            "SELECT a.site_id, a.material_id, a.kind, a.severity, a.details, a.resolved_at,"
            " extract(epoch FROM (SELECT min(x.at) FROM alert_actions x WHERE x.alert_id = a.alert_id"
            "                     AND x.action = 'opened') - a.at)"
            " FROM alerts a WHERE a.site_id LIKE %s AND a.kind = ANY(%s) ORDER BY a.at",
            (prefix + "%", list(FINDING_KINDS))).fetchall()


@pytest.mark.services
def test_picks_and_declared_movements_raise_nothing_and_every_fault_is_caught(stream_settings, unique, worker_factory):
    s = stream_settings
    reg = generate_registry(9, seed=11, id_prefix=f"r{unique}-", materials_per_site=4, centralized_share=1.0)
    with connect(s.pg_dsn, autocommit=True) as conn:
        store_registry(conn, reg)
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES (%s, 'r', now(), 'test', 'test', 1, 60, 'test')",
                     (f"E{unique}",))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status)"
                     " VALUES (%s, %s, 1, now(), 'optimal')", (f"P-E{unique}", f"E{unique}"))
    ids = sorted(reg.sites)
    honest, thief, inflater, spiky, stuck, phantom = ids[:4], ids[4], ids[5], ids[6], ids[7], ids[8]
    with connect(s.pg_dsn, autocommit=True) as conn:  # the inflater's pork store holds 1.3 x its contract
        conn.execute("INSERT INTO contract_site_terms (contract_id, capacity_qty)"
                     " SELECT contract_id, committed_qty * 1.3 FROM contracts WHERE site_id = %s AND material_id = 'pork'",
                     (inflater,))
    unit_of = {m: reg.materials[m].unit for m in reg.materials}
    bridge = Bridge(s, BridgeConfig(client_id=f"vr-test-bridge-{unique}", linger_ms=5))
    fleets = [
        Fleet(s, reg, 1.0, site_ids=honest + [thief, inflater], auth="gateway", gateways=1, seed=1,
              faults=Faults(duplicates=0.1, out_of_order=0.1, malformed=0.05)),
        Fleet(s, reg, 1.0, site_ids=[spiky], auth="gateway", gateways=1, seed=2, faults=Faults(spike=0.3)),
        Fleet(s, reg, 1.0, site_ids=[stuck], auth="gateway", gateways=1, seed=3,
              faults=Faults(stuck=1.0, stuck_readings=10 ** 6)),
        Fleet(s, reg, 1.0, site_ids=[phantom], auth="gateway", gateways=1, seed=4, faults=Faults(phantom_picks=1.0)),
    ]
    fleet_of = {site: f for f in fleets for site in f.site_ids}
    sim = LogisticsSimulator(s, Timing(accept_s=0.2, pick_s=0.3, deliver_s=0.5, jitter=0.1, pick_timeout_s=5.0),
                             group=s.group(f"logistics-{unique}"), client_id=f"t-logistics-{unique}", say=lambda m: None)
    sim_thread = threading.Thread(target=sim.run, daemon=True)
    applier = StatusApplier(s)
    producer = kafka_clients.producer(s, ADMIN, acks="all")
    worker = worker_factory(s, *SETTLE).start()
    bridge.start()
    try:
        for f in fleets:
            f.start()
            assert f.wait_connected(20)
        sim_thread.start()
        applier.thread.start()
        with connect(s.pg_dsn, autocommit=True) as conn:
            def all_reporting():
                n = conn.execute("SELECT count(DISTINCT site_id) FROM stock_readings WHERE site_id LIKE %s"
                                 " AND seq > 0", (f"r{unique}-%",)).fetchone()[0]
                return n == len(ids)
            _wait(all_reporting, 60, "every site reporting")
            time.sleep(3)  # a few readings each before anything moves

            # Honest activity: picks of 60 % of a material (the old jump rule's threshold was 50 %),
            # a declared replenishment and a declared consumption.
            orders, n = [], 0
            for site in honest + [stuck, phantom]:
                for material in (["medicine", "pork"] if site in honest else ["medicine"]):
                    have = fleet_of[site].stock(site)[material]
                    qty = math.floor(have * 0.6) if unit_of[material] == "box" else round(have * 0.6, 1)
                    n += 1
                    orders.append(_place_order(conn, producer, s, f"E{unique}", n, site, material, qty,
                                               unit_of[material]))
            producer.flush()
            declared = []
            for site, material, share in ((honest[0], "medical_alcohol", 1.0), (honest[1], "medical_alcohol", -0.5)):
                f = fleet_of[site]
                delta = round(f.stock(site)[material] * share, 1)
                at = f.move_stock(site, material, delta)
                declared.append(declare_movement(conn, Movement(
                    f"M-{unique}-{site}", site, material, "replenishment" if delta > 0 else "consumption",
                    abs(delta), unit_of[material], at), actor="test:owner", source="test"))
            assert declared == [True, True]
            # Fraud without any pick: goods gone, goods appearing; nobody declares anything.
            fleet_of[thief].move_stock(thief, "pork", -fleet_of[thief].stock(thief)["pork"] * 0.5)
            fleet_of[inflater].move_stock(inflater, "pork", fleet_of[inflater].stock(inflater)["pork"] * 1.0)

            # kafka-python's group join now and then misses a fresh topic's metadata and gets no
            # partition (seen once here: "No partition metadata for topic ...dispatch-orders"); a
            # carrier that has taken no order after 20 s joins again under a new group.
            try:
                _wait(lambda: sim.counters.orders >= len(orders), 20, "the carrier to take the orders")
            except AssertionError:
                sim.stop()
                sim_thread.join(10)
                sim = LogisticsSimulator(s, sim.timing, group=s.group(f"logistics2-{unique}"),
                                         client_id=f"t-logistics2-{unique}", say=lambda m: None)
                sim_thread = threading.Thread(target=sim.run, daemon=True)
                sim_thread.start()

            def all_picked():
                return conn.execute("SELECT count(*) FROM dispatch_orders WHERE order_id = ANY(%s)"
                                    " AND picked_at IS NOT NULL", (orders,)).fetchone()[0] == len(orders)
            _wait(all_picked, 60, f"every order picked and its status recorded (carrier {sim.counters}, "
                                  f"statuses applied {applier.applied})")
            _wait(lambda: fleets[1].counters.spikes_sent > 0, 30, "a spike")
            t_done = datetime.now(timezone.utc)

            def judged_past_everything():
                # every key reconciled up to readings after the last movement (settle + a check)
                behind = conn.execute("SELECT count(*) FROM stock_latest l LEFT JOIN reconcile_cursor c"
                                      " USING (site_id, material_id) WHERE l.site_id LIKE %s"
                                      " AND (c.ts IS NULL OR c.ts < %s)", (f"r{unique}-%", t_done)).fetchone()[0]
                return behind == 0
            _wait(judged_past_everything, 60, "the worker's reconciliation to pass every movement")
            explained = conn.execute(
                "SELECT site_id, material_id, picked_qty, declared_qty, prev_qty, qty, verdict FROM stock_changes"
                " WHERE site_id = ANY(%s) AND (picked_qty > 0 OR declared_qty <> 0)", (honest,)).fetchall()
    finally:
        sim.stop()
        applier.stop.set()
        for f in fleets:
            f.stop()
        bridge.stop(drain_timeout_s=5)
        producer.close()
        worker.stop()

    findings = _findings(s.pg_dsn, f"r{unique}-")
    by_site: dict[str, list[tuple]] = {}
    for row in findings:
        by_site.setdefault(row[0], []).append(row)
    # Honest sites: the picks and declared movements explain every change.
    assert not [r for r in findings if r[0] in honest], findings
    picks_on_honest = sum(1 for r in explained if float(r[2]) > 0)
    assert picks_on_honest == 2 * len(honest), explained
    assert all(r[6] == "explained" for r in explained), explained
    old_rule = sum(1 for r in explained if abs(float(r[5]) - float(r[4])) / max(float(r[4]), 1) > 0.5)
    assert old_rule >= len(honest), "the picks must be big enough for the old jump rule to have fired"
    assert sum(1 for r in explained if float(r[3]) != 0) == 2  # both declared movements were used
    # Every injected fault is caught, on the right material, with the right finding.
    caught = {site: {(r[1], r[2], r[4]["verdict"]) for r in rows} for site, rows in by_site.items()}
    assert ("pork", "unexplained_change", "unexplained_drop") in caught.get(thief, set()), findings
    assert ("pork", "above_capacity", "above_capacity") in caught.get(inflater, set()), findings
    assert any(k == "unexplained_change" and v == "unexplained_rise" for _m, k, v in caught.get(spiky, set())), findings
    assert ("medicine", "pick_not_reflected", "pick_not_reflected") in caught.get(stuck, set()), findings
    assert ("medicine", "pick_not_reflected", "pick_not_reflected") in caught.get(phantom, set()), findings
    # What explained the rest is stated: the stuck sensor's alert names the order it hides.
    stuck_alert = next(r for r in by_site[stuck] if r[2] == "pick_not_reflected")
    assert stuck_alert[3] == "critical" and stuck_alert[4]["picked_qty"] > 0
    assert stuck_alert[4]["explained_by"][0]["kind"] == "pick"
    assert stuck_alert[4]["explained_by"][0]["ref"] in orders
    delays = {site: min(float(r[6]) for r in rows) for site, rows in by_site.items()}
    print("\nfindings: " + "; ".join(f"{site[-5:]}: {sorted(caught[site])}" for site in sorted(caught)))
    print(f"picks on honest sites {picks_on_honest} + declared movements 2: 0 findings "
          f"(the old 50 % jump rule would have raised {old_rule})")
    print("delay reading -> alert, s: " + ", ".join(f"{k}={delays[v]:.1f}" for k, v in
          (("theft", thief), ("above capacity", inflater), ("spike", spiky), ("stuck", stuck), ("phantom pick", phantom))))
    print(f"mean delay {sum(delays.values()) / len(delays):.1f} s (settle 2 s, checks every 1 s)")
