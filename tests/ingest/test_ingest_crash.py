"""SIGKILL the bridge mid-stream, restart it: every published reading reaches Kafka at least once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from vreserve.mqtt import end_session
from vreserve import topics
from vreserve.schemas.readings import ReadingBatch

pytestmark = [pytest.mark.services, pytest.mark.slow]

VRESERVE = str(Path(sys.executable).with_name("vreserve"))


def _bridge_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_TOPIC_PREFIX=settings.topic_prefix, VR_PG_DSN=settings.pg_dsn,
               VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url,
               VR_STATE_DIR=str(settings.state_dir), VR_MQTT_CA_FILE=settings.mqtt_ca_file)
    return env


class BridgeProcess:
    """``vreserve ingest run`` as a real subprocess; its status lines are collected."""

    def __init__(self, settings, client_id: str):
        self.proc = subprocess.Popen(
            [VRESERVE, "ingest", "run", "--client-id", client_id, "--status-interval", "1", "--status-json"],
            env=_bridge_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if '"note": "started"' in line:
                self.started.set()

    def last_status(self) -> dict:
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        return {}

    def kill(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(30)


def test_sigkill_mid_stream_loses_nothing(settings, registry, unique, service_client, topic_reader) -> None:
    client_id = f"vr-test-crash-{unique}"
    sites = list(registry.sites)
    n_messages = 3000
    first = BridgeProcess(settings, client_id)
    second = None
    try:
        assert first.started.wait(60), "bridge did not start:\n" + "\n".join(first.lines[-20:])
        publisher = service_client()
        published: list[tuple[str, int]] = []
        infos = []

        def publish_all() -> None:
            t0 = time.monotonic()
            for i in range(n_messages):
                site = sites[i % len(sites)]
                mats = list(registry.sites[site].materials)[:5]
                body = {"v": 1, "site_id": site, "seq": i, "readings": [
                    {"material": m, "qty": float(i % 97), "unit": registry.materials[m].unit} for m in mats],
                    "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
                infos.append(publisher.publish(topics.mqtt_stock_topic(site), json.dumps(body), qos=1))
                published.append((site, i))
                # ~750 messages/s: the stream is still running when the bridge dies.
                lag = t0 + (i + 1) / 750 - time.monotonic()
                if lag > 0:
                    time.sleep(lag)

        feeder = threading.Thread(target=publish_all)
        feeder.start()
        while len(published) < n_messages // 3:
            time.sleep(0.01)
        status_before = first.last_status()
        first.kill(signal.SIGKILL)
        killed_at = len(published)
        time.sleep(0.5)
        second = BridgeProcess(settings, client_id)
        assert second.started.wait(60), "restarted bridge did not start:\n" + "\n".join(second.lines[-20:])
        feeder.join(60)
        for info in infos:
            info.wait_for_publish(30)  # the broker has every message
        assert killed_at < n_messages, "the bridge died after the stream ended; not a mid-stream kill"

        wanted = set(published)
        ours = set(sites)

        def got(records) -> set:
            out = set()
            for r in records:
                if r.key and r.key.decode() in ours:
                    rep = ReadingBatch.from_json(r.value).report
                    out.add((rep.site_id, rep.seq))
            return out

        records = topic_reader(settings, topics.READINGS, lambda rs: wanted <= got(rs), timeout=90)
        missing = wanted - got(records)
        assert not missing, f"{len(missing)} of {len(wanted)} readings never reached Kafka, e.g. {sorted(missing)[:5]}"
        status = second.last_status()
        print(f"killed after {killed_at} published (bridge had received {status_before.get('received')});"
              f" restarted bridge: {status}")
    finally:
        for b in (first, second):
            if b is not None:
                b.kill(signal.SIGTERM)
        end_session(settings.mqtt, client_id)
