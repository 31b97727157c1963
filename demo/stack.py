"""The demo's subprocesses: `vreserve` commands started with their logs kept, echoed live, always stopped."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from vreserve.settings import PROJECT_ROOT, Settings

#: Lines of the services' own logs not echoed live (still in the log files): client-library chatter.
_NOISE = ("DEBUG", "producer buffer full", "Timer commit is overlapping", "Timer Monitor.sampler")


@dataclass
class Stack:
    """The demo's subprocesses: started with logs in ``log_dir``, echoed live, always stopped."""

    env: dict
    log_dir: Path
    t0: float
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    echo: bool = True
    #: every line each subprocess printed so far (to wait for a "ready" line)
    lines: dict[str, list[str]] = field(default_factory=dict)

    def say(self, msg: str) -> None:
        print(f"[demo {time.monotonic() - self.t0:6.1f} s] {msg}", flush=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log_path = self.log_dir / f"{name}.log"
        p = subprocess.Popen([sys.executable, "-m", "vreserve.cli", *args], cwd=PROJECT_ROOT, env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             start_new_session=True)
        self.procs.append((name, p))
        threading.Thread(target=self._pump, args=(name, p, log_path), daemon=True).start()
        self.say(f"started {name} (pid {p.pid}): vreserve {' '.join(args)}")
        return p

    def _pump(self, name: str, p: subprocess.Popen, log_path: Path) -> None:
        seen = self.lines.setdefault(name, [])
        with open(log_path, "w") as log:
            for line in p.stdout:  # type: ignore[union-attr]
                seen.append(line)
                log.write(line)
                log.flush()
                if self.echo and not any(noise in line for noise in _NOISE):
                    print(f"  [{name}] {line.rstrip()[:220]}", flush=True)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "vreserve.cli", *args], cwd=PROJECT_ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        for line in (res.stdout + res.stderr).splitlines():
            print(f"  [vreserve {args[0]}] {line[:220]}", flush=True)
        return res

    def wait_line(self, name: str, text: str, timeout: float) -> None:
        """Wait until subprocess ``name`` printed a line containing ``text`` (its "ready" line)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines.get(name, []))):
            self.check_alive()
            if time.monotonic() > deadline:
                raise click.ClickException(f"{name} did not say {text!r} within {timeout:g} s; "
                                           f"see {self.log_dir}/{name}.log")
            time.sleep(0.1)

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None:
                raise click.ClickException(f"{name} exited with code {p.returncode}; see {self.log_dir}/{name}.log")

    def stop_all(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop on SIGTERM; killing it")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        left = [name for name, p in self.procs if p.poll() is None]
        self.say("all demo processes stopped" if not left else f"still running: {left}")


def stack_env(settings: Settings, interval: float) -> dict[str, str]:
    """The subprocesses' environment: this process's, with every VR_* replaced by the demo's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VR_")}
    env.update(VR_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VR_MQTT_URL=settings.mqtt_url,
               VR_PG_DSN=settings.pg_dsn, VR_TOPIC_PREFIX=settings.topic_prefix,
               VR_PARTITIONS=str(settings.partitions), VR_STATE_DIR=str(settings.state_dir),
               VR_MQTT_CA_FILE=settings.mqtt_ca_file, VR_KAFKA_SECURITY=settings.kafka_security,
               VR_KAFKA_CA_FILE=settings.kafka_ca_file, VR_SECRETS_DIR=settings.secrets_dir,
               VR_READING_INTERVAL_S=str(interval), VR_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    return env


def api_addr(settings: Settings) -> str:
    """VR_HTTP_ADDR when its port is free, else a free loopback port (another API may be running)."""
    host, port = settings.http_host_port
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return f"{host}:{port}"
        except OSError:
            return f"127.0.0.1:{free_port()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
