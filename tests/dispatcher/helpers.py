"""Test data for the dispatcher: a small registry written straight into the test database.

The dispatcher reads the registry, contracts and live stock from the database; building them
here (rather than through the ingest stage) keeps these tests about the dispatcher alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

MATERIALS = {
    "medicine": ("Medicine", "box", "medical", True),
    "medical_alcohol": ("Medical alcohol", "bottle", "medical", True),
    "ventilator": ("Ventilator", "unit", "medical", False),
    "pork": ("Pork", "kg", "living", True),
}


@dataclass
class Region:
    region: str
    sites: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)


def ensure_materials(conn) -> None:
    for mid, (name, unit, cls, consumable) in MATERIALS.items():
        conn.execute(
            "INSERT INTO materials (material_id, name, unit, class, consumable) VALUES (%s,%s,%s,%s,%s)"
            " ON CONFLICT (material_id) DO NOTHING",
            (mid, name, unit, cls, consumable),
        )


def make_region(
    conn,
    region: str,
    n_central: int = 2,
    n_cells: int = 2,
    per_cell: int = 3,
    stock: dict[str, float] | None = None,
    contract: dict[str, float] | None = None,
    today: date | None = None,
) -> Region:
    """Sites with readings and contracts valid today; every site holds ``stock`` of each material."""
    ensure_materials(conn)
    stock = stock or {"medicine": 400.0, "medical_alcohol": 300.0, "ventilator": 6.0, "pork": 500.0}
    contract = contract or stock
    today = today or datetime.now(timezone.utc).date()
    now = datetime.now(timezone.utc)
    reg = Region(region)
    parents = []
    for i in range(n_central):
        sid = f"{region}-C{i}"
        parents.append(sid)
        _site(conn, sid, region, f"{region}-g{i}", "centralized", None, 30.5 + i * 0.01, 114.3 + i * 0.01)
        reg.sites.append(sid)
    for c in range(n_cells):
        cell = f"{region}-g{c}"
        reg.cells.append(cell)
        for k in range(per_cell):
            sid = f"{region}-D{c}-{k}"
            _site(conn, sid, region, cell, "decentralized", parents[c % len(parents)],
                  30.5 + c * 0.01 + k * 0.001, 114.3 + c * 0.01)
            reg.sites.append(sid)
    for sid in reg.sites:
        for mid, qty in stock.items():
            conn.execute(
                "INSERT INTO site_materials (site_id, material_id, contracted_qty) VALUES (%s,%s,%s)",
                (sid, mid, contract.get(mid, qty)),
            )
            conn.execute(
                "INSERT INTO contracts (contract_id, site_id, material_id, committed_qty, valid_from, valid_to,"
                " call_off_price_minor_per_unit) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                (f"K-{sid}-{mid}", sid, mid, contract.get(mid, qty), today - timedelta(days=30),
                 today + timedelta(days=335), 1000),
            )
            set_stock(conn, sid, mid, qty, ts=now, seq=1)
    return reg


def set_stock(conn, site_id: str, material: str, qty: float, ts: datetime | None = None, seq: int = 1) -> None:
    ts = ts or datetime.now(timezone.utc)
    conn.execute(
        "INSERT INTO stock_latest (site_id, material_id, qty, unit, ts, seq) VALUES (%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (site_id, material_id) DO UPDATE SET qty = EXCLUDED.qty, ts = EXCLUDED.ts, seq = EXCLUDED.seq",
        (site_id, material, qty, MATERIALS[material][1], ts, seq),
    )


def _site(conn, sid, region, cell, tier, parent, lat, lon) -> None:
    conn.execute(
        "INSERT INTO sites (site_id, name, owner_id, owner_kind, tier, parent_site_id, region, grid_cell, lat, lon)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (sid, f"site {sid}", f"owner-{sid}", "government" if tier == "centralized" else "household",
         tier, parent, region, cell, lat, lon),
    )


SMALL_SCENARIO = str(__import__("pathlib").Path(__file__).parent / "data" / "small.yaml")


class TopicReader:
    """Reads a whole topic from the beginning (no consumer group): what anyone downstream would see."""

    def __init__(self, settings, logical: str):
        from kafka import TopicPartition
        from vreserve import kafka_clients
        from vreserve.kafka_access import ADMIN

        self.consumer = kafka_clients.consumer(settings, ADMIN, enable_auto_commit=False,
                                      group_id=None)
        name = settings.topic(logical)
        parts = [TopicPartition(name, p) for p in sorted(self.consumer.partitions_for_topic(name) or [])]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.records: list[tuple[bytes | None, bytes]] = []

    def poll(self, seconds: float = 0.5) -> list[tuple[bytes | None, bytes]]:
        import time

        end = time.monotonic() + seconds
        new = []
        while time.monotonic() < end:
            for _tp, recs in self.consumer.poll(timeout_ms=100).items():
                new += [(r.key, r.value) for r in recs]
        self.records += new
        return new

    def json(self) -> list[dict]:
        import json

        return [json.loads(v) for _k, v in self.records]

    def close(self) -> None:
        self.consumer.close()


def wait_for(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class SiteStandIn:
    """Stands in for the sensor fleet + bridge + stream worker of the sites a test uses.

    Subscribes to pick commands over MQTT (like a real site), applies each order id once (never
    below zero), answers on ``vr/v1/sites/{id}/picked`` with what it handed over, and
    reports the site's new stock into ``stock_latest`` at its next reading ticks (every ``interval``
    s, a few times after each change), as the stream worker would after the fleet's readings.
    """

    def __init__(self, settings, interval: float = 0.5):
        import threading

        from vreserve.mqtt import connect as mqtt_connect, new_client

        from vreserve.db import connect

        self.interval = interval
        self.applied: dict[str, tuple[str, str, float]] = {}
        self.ticks_left: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.conn = connect(settings.pg_dsn, autocommit=True)
        self.base = {(s_, m): float(q) for s_, m, q in
                     self.conn.execute("SELECT site_id, material_id, qty FROM stock_latest")}
        addr = settings.mqtt
        self.client = new_client(addr, None)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("vr/v1/sites/+/commands/pick", qos=1)
        mqtt_connect(self.client, addr)
        self.client.loop_start()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._report_loop, daemon=True)
        self.thread.start()

    def _on_message(self, _c, _u, msg) -> None:
        import json
        from datetime import datetime, timezone

        site_id = msg.topic.split("/")[3]
        try:  # the broker is shared: other sessions' sites and fault injection use the same topics
            cmd = json.loads(msg.payload)
            key = (site_id, cmd["material"])
            cmd["order_id"], float(cmd["qty"])
        except (ValueError, KeyError, TypeError):
            return
        if key not in self.base:
            return
        with self.lock:
            if cmd["order_id"] not in self.applied:
                have = max(0.0, self.base[key] - sum(q for s_, m, q in self.applied.values() if (s_, m) == key))
                self.applied[cmd["order_id"]] = (site_id, cmd["material"], min(float(cmd["qty"]), have))
                self.ticks_left[key] = 4
            picked = self.applied[cmd["order_id"]][2]
        # like a site of the fleet: answer with what was really handed over (replays: the same answer)
        self.client.publish(f"vr/v1/sites/{site_id}/picked", json.dumps(
            {"v": 1, "order_id": cmd["order_id"], "material": cmd["material"], "requested": float(cmd["qty"]),
             "picked": picked, "unit": cmd.get("unit", ""), "ts": datetime.now(timezone.utc).isoformat()}), qos=1)

    def stock(self, site_id: str, material: str) -> float:
        with self.lock:
            picked = sum(q for s_, m, q in self.applied.values() if (s_, m) == (site_id, material))
        return max(0.0, self.base.get((site_id, material), 0.0) - picked)

    def _report_loop(self) -> None:
        from datetime import datetime, timezone

        while not self._stop.wait(self.interval):
            with self.lock:
                due = [k for k, n in self.ticks_left.items() if n > 0]
                for k in due:
                    self.ticks_left[k] -= 1
            for site_id, material in due:
                self.conn.execute(
                    "UPDATE stock_latest SET qty = %s, ts = %s, seq = seq + 1 WHERE site_id = %s AND material_id = %s",
                    (self.stock(site_id, material), datetime.now(timezone.utc), site_id, material))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()
        self.conn.close()
