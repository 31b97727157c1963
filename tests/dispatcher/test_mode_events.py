"""Mode events: schema strictness (pure), and bad events on the real topic get a clear error
record on mode.errors and in mode_events, and change nothing."""
from __future__ import annotations

import json

import pytest

from dispatcher.operator import declare_event, end_event, parse_duration, publish_mode
from tests.dispatcher.helpers import SMALL_SCENARIO, TopicReader, make_region, wait_for
from vreserve import topics
from vreserve.db import connect
from vreserve.schemas.common import SchemaError
from vreserve.schemas.dispatch import ModeEvent


def test_mode_event_round_trip_and_strictness():
    ev = declare_event("wuhan", ["g1"], "wuhan", 4, 5.0, "flood", event_id="e1", who="op")
    assert ModeEvent.from_json(ev.to_json()) == ev
    end = end_event("wuhan", "over", event_id="e2", who="op")
    assert ModeEvent.from_json(end.to_json()) == end
    bad = [
        b"{not json",
        b"[]",
        json.dumps({**ev.to_payload(), "v": 2}).encode(),
        json.dumps({**ev.to_payload(), "kind": "pause"}).encode(),
        json.dumps({**ev.to_payload(), "periods": 0}).encode(),
        json.dumps({**ev.to_payload(), "period_length_s": -1}).encode(),
        json.dumps({**ev.to_payload(), "surprise": 1}).encode(),
        json.dumps({k: v for k, v in ev.to_payload().items() if k != "region"}).encode(),
        json.dumps({**ev.to_payload(), "at": "yesterday"}).encode(),
    ]
    for raw in bad:
        with pytest.raises(SchemaError):
            ModeEvent.from_json(raw)
    assert parse_duration("5s") == 5 and parse_duration("2m") == 120 and parse_duration("1d") == 86400
    with pytest.raises(ValueError):
        parse_duration("-3s")


@pytest.mark.services
def test_bad_mode_events_are_recorded_and_change_nothing(settings, procs, unique):
    region = f"m{unique}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        make_region(conn, region, n_central=1, n_cells=1, per_cell=1)
    errors = TopicReader(settings, topics.MODE_ERRORS)
    try:
        procs.start(settings, "dispatch", "run", name="dispatcher")
        cases = {
            "malformed": b'{"v": 1, "kind": "declare", "region": ' + region.encode(),
            "unknown region": declare_event(f"nowhere-{unique}", (), SMALL_SCENARIO, 2, 2.0, "x").to_json(),
            "end without declare": end_event(region, "nothing to end").to_json(),
            "bad demand file": declare_event(region, (), "/nonexistent/demand.yaml", 2, 2.0, "x").to_json(),
            "too many periods": declare_event(region, (), SMALL_SCENARIO, 9, 2.0, "x").to_json(),
            "unknown grid cell": declare_event(region, ("no-such-cell",), SMALL_SCENARIO, 2, 2.0, "x").to_json(),
        }
        for raw in cases.values():
            publish_mode(settings, raw, region)

        # other tests of the session publish to the same mode topics: wait for every reason we caused
        expected = ("malformed mode event", f"unknown region 'nowhere-{unique}'", "end without declare",
                    "/nonexistent/demand.yaml", "has 4 periods, the emergency wants 9", "unknown grid cell")

        def missing():
            errors.poll(0.3)
            text = " | ".join(r["error"] for r in errors.json())
            return [e for e in expected if e not in text]
        wait_for(lambda: not missing(), 30, what="mode error records")
        with connect(settings.pg_dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT kind, accepted, error FROM mode_events WHERE region IN (%s, %s)"
                                " OR kind = 'malformed'", (region, f"nowhere-{unique}")).fetchall()
            assert len(rows) >= len(cases) and all(not acc and err for _k, acc, err in rows)
            assert conn.execute("SELECT count(*) FROM emergencies WHERE region IN (%s, %s)",
                                (region, f"nowhere-{unique}")).fetchone()[0] == 0
            # a good declare is still accepted afterwards; a second declare for the region is refused
            good = declare_event(region, (), SMALL_SCENARIO, 2, 4.0, "real one")
            publish_mode(settings, good.to_json(), region)
            wait_for(lambda: conn.execute("SELECT accepted FROM mode_events WHERE event_id = %s",
                                          (good.event_id,)).fetchone(), 15, what="good declare")
            # rescue centres' demand updates (demand topic) replace the file's figure for period 2;
            # malformed ones and unknown regions are refused and stored nowhere
            from vreserve.schemas.common import utc_now
            from vreserve.schemas.dispatch import DemandUpdate
            from vreserve import kafka_clients
            from vreserve.kafka_access import ADMIN

            producer = kafka_clients.producer(settings, ADMIN, acks="all")
            for upd in (DemandUpdate(f"d1-{unique}", region, "RC-1", "medicine", 2, 500.0, utc_now()),
                        DemandUpdate(f"d2-{unique}", region, "RC-1", "medicine", 2, 777.0, utc_now()),
                        DemandUpdate(f"d3-{unique}", f"nowhere-{unique}", "RC-1", "medicine", 2, 5.0, utc_now())):
                producer.send(settings.topic(topics.DEMAND), key=b"RC-1", value=upd.to_json())
            producer.send(settings.topic(topics.DEMAND), key=b"RC-1", value=b'{"v":1,"qty":-3}')
            producer.flush()
            producer.close()
            plan2 = wait_for(lambda: conn.execute(
                "SELECT p.summary FROM plans p JOIN emergencies e USING (emergency_id) WHERE e.region = %s"
                " AND p.period = 2", (region,)).fetchone(), 20, what="period 2 plan")[0]
            assert plan2["materials"]["medicine"]["demand_period"] == 777.0 + 200.0   # RC-1 updated, RC-2 file
            stored = {r[0] for r in conn.execute("SELECT update_id FROM demand_updates WHERE update_id LIKE %s",
                                                  (f"%-{unique}",))}
            assert stored == {f"d1-{unique}", f"d2-{unique}"}
            again = declare_event(region, (), SMALL_SCENARIO, 2, 30.0, "twice")
            publish_mode(settings, again.to_json(), region)
            row = wait_for(lambda: conn.execute("SELECT accepted, error FROM mode_events WHERE event_id = %s",
                                                (again.event_id,)).fetchone(), 15, what="second declare")
            assert row[0] is False and "already in emergency" in row[1]
            # replaying the same event changes nothing (recorded once)
            publish_mode(settings, good.to_json(), region)
            publish_mode(settings, end_event(region, "done", event_id=f"end-{unique}").to_json(), region)
            wait_for(lambda: conn.execute("SELECT 1 FROM mode_events WHERE event_id = %s", (f"end-{unique}",)).fetchone(),
                     15, what="end")
            assert conn.execute("SELECT count(*) FROM emergencies WHERE region = %s", (region,)).fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM mode_events WHERE event_id = %s",
                                (good.event_id,)).fetchone()[0] == 1
    finally:
        errors.close()
