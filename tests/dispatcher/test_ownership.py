"""Which dispatcher owns a region (issue 17): the mode partition its events land in, and only its
regions' stored plans are published by it. The scale-out itself (two dispatchers, one SIGKILLed)
is tests/scale/test_dispatchers.py."""
from __future__ import annotations

import re
import signal

import pytest

from dispatcher import book
from dispatcher.service import Dispatcher, member_instance_id, mode_partition
from tests.dispatcher.conftest import log_of
from tests.dispatcher.helpers import wait_for
from vreserve import kafka_clients
from vreserve.db import connect
from vreserve.kafka_access import ADMIN
from vreserve.kafka_admin import ensure_named_topics
from vreserve.schemas.common import utc_now

pytestmark = pytest.mark.services


def test_a_regions_partition_is_where_the_producer_puts_its_events(settings, unique):
    """The dispatcher's ownership hash agrees with the producer that publishes mode events
    (kafka-python's default partitioner, as `publish_mode` and the API use) for many regions."""
    name = settings.topic(f"ownership-{unique}")
    ensure_named_topics(settings, [(name, 4, {})])
    producer = kafka_clients.producer(settings, ADMIN)
    try:
        regions = [f"region-{unique}-{i}" for i in range(24)] + ["wuhan", "restartville", "R-1"]
        landed = {r: producer.send(name, key=r.encode(), value=b"{}").get(timeout=30).partition for r in regions}
    finally:
        producer.close(5)
    assert {r: mode_partition(r, 4) for r in regions} == landed
    assert len(set(landed.values())) > 1, "24 regions in one partition: the check proves nothing"


def test_a_dispatcher_publishes_only_the_plans_of_its_regions(settings, unique):
    """Stored, unpublished plans are picked per owned region; outside a group (owned partitions
    None) a dispatcher owns every region, as a single one always did."""
    candidates = [f"own-{unique}-{i}" for i in range(64)]
    regions = ([r for r in candidates if mode_partition(r, 4) in (0, 1)][:4]
               + [r for r in candidates if mode_partition(r, 4) not in (0, 1)][:4])
    with connect(settings.pg_dsn, autocommit=True) as conn:
        for i, region in enumerate(regions):  # ended and closed out: no other test's dispatcher plans them
            conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                         " period_length_s, demand_source, ended_at, closed_out_at)"
                         " VALUES (%s, %s, now(), 't', 't', 1, 60, 'wuhan', now(), now())",
                         (f"E-{unique}-{i}", region))
            conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status, region)"
                         " VALUES (%s,%s,1,%s,'optimal',%s)", (f"P-{unique}-{i}", f"E-{unique}-{i}", utc_now(), region))
        d = Dispatcher(settings, say=lambda _m: None)
        mine = set(book.unpublished_plans(conn, d.owned_regions(conn)))
        assert {f"P-{unique}-{i}" for i in range(8)} <= mine  # no group: every region

        d.mode_partitions, d.owned_partitions = 4, {0, 1}
        owned = d.owned_regions(conn)
        expected = {r for r in regions if mode_partition(r, 4) in (0, 1)}
        assert set(owned) >= expected and not [r for r in owned if mode_partition(r, 4) not in (0, 1)]
        picked = {p for p in book.unpublished_plans(conn, owned) if p.startswith(f"P-{unique}-")}
        assert picked == {f"P-{unique}-{i}" for i, r in enumerate(regions) if r in expected}
        assert len(picked) == 4
        conn.execute("DELETE FROM plans WHERE plan_id LIKE %s", (f"P-{unique}-%",))
        conn.execute("DELETE FROM emergencies WHERE emergency_id LIKE %s", (f"E-{unique}-%",))


def test_a_stopped_dispatcher_leaves_the_mode_group(settings, procs):
    """A clean stop takes the dispatcher's static membership out of the group at once: its client
    never sends LeaveGroup (static members do not), so without this its regions stayed with a
    dispatcher that was gone, and the next one waited, until the session timed out."""
    group = settings.group("dispatcher")
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        def instances() -> set[str]:
            return {m.get("group_instance_id") for m in admin.describe_groups([group])[group]["members"]}

        p = procs.start(settings, "dispatch", "run", name="dispatcher")
        wait_for(lambda: "dispatcher: started" in log_of(p), 60, what="the dispatcher started")
        me = member_instance_id(group, int(re.search(r"started \(slot (\d+)", log_of(p)).group(1)))
        wait_for(lambda: me in instances(), 30, what=f"{me} in the group")
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, log_of(p)
        assert me not in instances(), "a stopped dispatcher is still a member of the mode group"
    finally:
        admin.close()
