"""Process helpers shared by the benchmarks: child processes with captured output, CPU and memory
readings from /proc, free loopback ports, and the environment that points a child at a bench's
private topics and database.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import os
import sys
import signal
import socket
import subprocess
import threading
import time

from vreserve import kafka_clients
from vreserve.settings import Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children(pid: int | None) -> list[int]:
    """pid and its direct children (PostgreSQL's backends are children of the postmaster)."""
    if not pid:
        return []
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fleet_shards(vreserve: str, env: dict, *, sites: int, seed: int, id_prefix: str, materials: int,
                 interval: float, gateways: int, shards: int, duration: float) -> list["Proc"]:
    """The simulated fleet as ``shards`` processes (each its share of the sites, through gateways),
    publishing every ``interval`` s for ``duration`` s: the load the ingest and stream benchmarks offer."""
    out = []
    for i in range(shards):
        argv = [vreserve, "simulate", "sites", "--generate", str(sites), "--seed", str(seed),
                "--id-prefix", id_prefix, "--materials-per-site", str(materials),
                "--interval", f"{interval:.4f}", "--auth", "gateway",
                "--gateways", str(max(1, gateways // shards)), "--shard", f"{i}/{shards}",
                "--duration", f"{duration:.1f}", "--progress-every", "1", "--jitter", "0.05"]
        out.append(Proc(argv, env, f"fleet{i}"))
    return out


class Proc:
    """A child process in its own session whose output lines are collected by a reader thread."""

    def __init__(self, argv: list[str], env: dict, name: str, own_session: bool = True, cwd: str | None = None):
        """``own_session`` False: a process group of its own in the caller's session, so that
        Linux's autogroup scheduling counts it with the caller (and its load generator) instead of
        as one more session sharing the CPU with every other on the machine. ``cwd``: a child run as
        ``python -m`` imports the packages of its working directory before PYTHONPATH, so a server
        from another source tree must also start in that tree."""
        self.name = name
        group = {"start_new_session": True} if own_session else {"process_group": 0}
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=cwd, **group)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def wait_line(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False


def child_env(settings: Settings, **extra: str) -> dict:
    """The current environment without VR_* variables, plus those that point at ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_TOPIC_PREFIX=settings.topic_prefix, VR_PG_DSN=settings.pg_dsn,
               VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url,
               VR_MQTT_CA_FILE=str(settings.mqtt.ca_file or ""), VR_LOG_LEVEL="WARNING",
               # a child with a state folder of its own still logs in to Kafka with the installation's
               # secrets and checks the broker against its CA
               VR_KAFKA_SECURITY=settings.kafka_security, VR_SECRETS_DIR=str(settings.secrets_folder),
               VR_KAFKA_CA_FILE=str(kafka_clients.ca_file(settings).resolve()), **extra)
    return env


def parse_rates(text: str) -> tuple[float, ...]:
    """``--rates 500,1000,2000`` as numbers; a usage error (not a traceback) otherwise."""
    import click

    try:
        return tuple(float(r) for r in text.split(","))
    except ValueError:
        raise click.UsageError("--rates must be numbers separated by commas") from None


def services_up(settings: Settings) -> None:
    """Start the services a benchmark talks to (a no-op when they run): every script starts what
    it needs."""
    from deploy import runner

    runner.up(settings, progress=lambda m: echo(f"services: {m}"))


def echo(line: str) -> None:
    """Print a progress line at once (benchmarks run for minutes; output may be piped)."""
    print(line, flush=True)
    sys.stdout.flush()
