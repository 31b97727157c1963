"""The webhook carrier keeps what it took in its own journal: SIGKILLed with orders accepted and not
delivered, the restarted carrier (a new process) resumes them to delivery, answers a redelivery of
any order it took before "already taken" and drives none twice; an order it finished before the
kill is not driven again."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ROOT, settings_env
from tests.api.test_carrier_webhook_mode import _seed
from tests.dispatcher.helpers import TopicReader
from vreserve import topics
from vreserve.carrier_webhooks import SIGNATURE_HEADER, sign
from vreserve.db import connect
from vreserve.schemas.common import utc_now
from vreserve.schemas.dispatch import CancelRecord, DispatchOrder, OrderStatus

pytestmark = pytest.mark.services

REGION, EM, CARRIER = "apij", "EM-apij", "carrier-journal"


def _seed_with_token_file(world, n: int, token_file: Path) -> list[DispatchOrder]:
    orders, token = _seed(world, n, REGION, EM, CARRIER, "O-jrn")
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return orders


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen, seconds: float = 60) -> re.Match:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return m
        if proc.poll() is not None:
            raise AssertionError(f"the carrier exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in the carrier's output within {seconds:g} s:\n{log.read_text()[-3000:]}")


class Carrier:
    """`vreserve simulate logistics --webhook` as its own process, with a journal."""

    def __init__(self, settings, world, token_file: Path, journal: Path, log: Path, timing: list[str]) -> None:
        self.log = log
        out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vreserve.cli", "simulate", "logistics", "--webhook", "127.0.0.1:0", "--api",
             world.url, "--token-file", str(token_file), "--journal", str(journal), "--jitter", "0", *timing],
            cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        m = _wait_for(log, r"webhook (\S+) registered with \S+; (\d+) order\(s\) resumed", self.proc)
        self.url, self.resumed = m.group(1), int(m.group(2))
        with connect(world.settings.pg_dsn, autocommit=True) as conn:
            self.secret = conn.execute("SELECT secret FROM carrier_webhooks WHERE carrier_id = %s",
                                       (CARRIER,)).fetchone()[0]

    def deliver(self, key: str, record_json: str) -> str:
        body = json.dumps({"event": key.split(":")[0], "delivery_id": f"D-{key}-{time.monotonic_ns()}",
                           "idempotency_key": key, "record": json.loads(record_json)}).encode()
        r = httpx.post(self.url, content=body, headers={SIGNATURE_HEADER: sign(self.secret, body)}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _statuses(world, ids: set[str]) -> list[OrderStatus]:
    reader = TopicReader(world.settings, topics.ORDER_STATUS)
    try:
        reader.poll(5.0)
        return [OrderStatus.from_json(v) for k, v in reader.records if k and k.decode() in ids]
    finally:
        reader.consumer.close()


def test_a_sigkilled_carrier_resumes_its_accepted_orders_and_takes_none_twice(world, settings, tmp_path):
    token_file, journal = tmp_path / "token.txt", tmp_path / "carrier-state" / "orders.jsonl"
    orders = _seed_with_token_file(world, 4, token_file)
    first = Carrier(settings, world, token_file, journal, tmp_path / "first.log",
                    ["--accept", "0.2", "--pick", "3600", "--deliver", "3601"])   # accepts, never picks
    second = None
    try:
        assert first.resumed == 0
        for o in orders[:3]:
            assert first.deliver(f"order:{o.order_id}", o.to_json()) == "taken"
        _wait_for(first.log, r"3 orders, 3 accepted, ", first.proc)
        with connect(world.settings.pg_dsn, autocommit=True) as conn:  # as the dispatcher books a cancel
            conn.execute("UPDATE dispatch_orders SET status = 'cancelled' WHERE order_id = %s", (orders[0].order_id,))
        cancel = CancelRecord(order_id=orders[0].order_id, emergency_id=EM, destination=orders[0].destination,
                              reason="superseded", at=utc_now())
        assert first.deliver(f"cancel:{orders[0].order_id}", cancel.to_json()) == "taken"
        _wait_for(journal, r'"done": "O-jrn-0"', first.proc)   # its cancelled status was posted
        first.kill()

        second = Carrier(settings, world, token_file, journal, tmp_path / "second.log",
                         ["--accept", "0.2", "--pick", "0.5", "--deliver", "0.8"])
        assert second.resumed == 2                         # O-jrn-1 and O-jrn-2; O-jrn-0 was finished
        for o in orders[:3]:
            assert second.deliver(f"order:{o.order_id}", o.to_json()) == "already taken"
        assert second.deliver(f"order:{orders[3].order_id}", orders[3].to_json()) == "taken"
        _wait_for(second.log, r"3 orders, 3 accepted, .* 3 delivered, .* 0 under way", second.proc)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    statuses = _statuses(world, {o.order_id for o in orders})
    kinds = Counter((s.order_id, s.status) for s in statuses)
    ids = {(s.order_id, s.status): set() for s in statuses}
    for s in statuses:
        ids[(s.order_id, s.status)].add(s.status_id)
    assert all(len(v) == 1 for v in ids.values()), ids      # a repeated status is the same record (de-duplicated)
    assert kinds[(orders[0].order_id, "cancelled")] == 1 and kinds[(orders[0].order_id, "accepted")] == 1
    assert {st for (oid, st) in kinds if oid == orders[0].order_id} == {"accepted", "cancelled"}
    for o in orders[1:]:
        assert {st for (oid, st) in kinds if oid == o.order_id} == {"accepted", "in_transit", "delivered"}, kinds
        assert kinds[(o.order_id, "delivered")] == 1
