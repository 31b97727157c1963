"""The local service runner: Kafka (KRaft), Mosquitto and PostgreSQL as project-owned processes.

Each service keeps its config, data, pid file and log under ``<state_dir>/<service>/`` and listens
on a loopback port that does not clash with system defaults. ``up`` is idempotent (a healthy
service is left alone), waits for health, and says which service failed and where its log is.
"""
from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from deploy import kafka_security, pg_security, timescaledb
from vreserve.db import recorded_variant, server_variant
from deploy.pki import ensure_server_cert
from vreserve import db_access, kafka_clients
from vreserve.kafka_access import ADMIN, COMPONENTS
from vreserve.kafka_admin import ensure_principals
from vreserve.mqtt import BrokerError, connect_and_wait, new_client
from vreserve.mqtt_access import ADMIN_USER, render_config
from vreserve.secret_store import ensure_secret, secret_path
from vreserve.settings import (
    DEFAULT_KAFKA_CONTROLLER_PORT,
    DEFAULT_MQTT_USER,
    Settings,
    PG_PASSFILE,
    mqtt_secret_name,
    redact,
)

DEPLOY_DIR = Path(__file__).resolve().parent
Progress = Callable[[str], None]


class ServiceError(RuntimeError):
    """A service did not start or is not healthy; the message names its log."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    address: str
    log: Path
    detail: str = ""
    pid: int | None = None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child not reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def new_cluster_id() -> str:
    """A KRaft cluster id, like Kafka's own Uuid.randomUuid: 22 url-safe base64 characters that never
    start with '-' (the storage tool's argument parser would read such an id as an option; one id in
    32 did, and failed a CI run)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log yet)"


def _wait(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


class Service:
    """Common pid-file handling; subclasses say how to start, stop and probe."""

    name = "service"
    start_timeout = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.state_dir / self.name
        self.log = self.dir / f"{self.name}.log"
        self.pid_file = self.dir / "pid"

    # -- to override
    def address(self) -> str:
        raise NotImplementedError

    def ports(self) -> list[int]:
        return [self.port]

    def prepare(self, progress: Progress) -> None:
        """Install or initialise whatever the first start needs (idempotent)."""

    def spawn(self) -> int:
        raise NotImplementedError

    def healthy(self) -> tuple[bool, str]:
        raise NotImplementedError

    # -- shared
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        running = _alive(pid)
        ok, detail = self.healthy() if running else (False, "not running")
        return ServiceStatus(self.name, running, ok, self.address(), self.log, detail, pid if running else None)

    def up(self, progress: Progress) -> tuple[ServiceStatus, float | None]:
        """Start unless already running and healthy; returns status and seconds spent starting."""
        current = self.status()
        if current.running and current.healthy:
            return current, None
        if current.running:
            # Running but not (yet) healthy: maybe still starting; give it the start timeout.
            progress(f"{self.name}: running (pid {current.pid}) but not healthy yet, waiting")
            t0 = time.monotonic()
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            busy = [p for p in self.ports() if _port_open(self.host, p)]
            if busy:
                raise ServiceError(
                    f"{self.name}: port(s) {', '.join(map(str, busy))} on {self.host} already in use by a process "
                    f"this runner did not start (another checkout's services?); stop it or set VR_* addresses"
                )
            self.prepare(progress)
            progress(f"{self.name}: starting on {self.address()} (log {self.log})")
            t0 = time.monotonic()
            pid = self.spawn()
            self.pid_file.write_text(str(pid))
        ok = _wait(lambda: _alive(self.pid()) and self.healthy()[0], self.start_timeout)
        elapsed = time.monotonic() - t0
        if not ok:
            state = "exited" if not _alive(self.pid()) else "not healthy"
            raise ServiceError(
                f"{self.name} {state} after {elapsed:.1f} s ({self.healthy()[1]}); log: {self.log}\n"
                f"--- last lines of {self.log} ---\n{_tail(self.log)}"
            )
        return self.status(), elapsed

    def down(self, progress: Progress, timeout: float = 30.0) -> bool:
        pid = self.pid()
        if not _alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        progress(f"{self.name}: stopping pid {pid}")
        self.terminate(pid)
        if not _wait(lambda: not _alive(pid), timeout):
            progress(f"{self.name}: did not stop in {timeout:.0f} s, killing")
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait(lambda: not _alive(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def terminate(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _popen(self, argv: list[str], **kwargs) -> int:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: down() signals the whole group
                **kwargs,
            )
        return proc.pid


# ----------------------------------------------------------------------------------------- Kafka
#: Kafka's own command-line clients, by the name its distribution's scripts use.
KAFKA_TOOLS = {
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
}


def pom_digest() -> str:
    return hashlib.sha256((DEPLOY_DIR / "pom.xml").read_bytes()).hexdigest()


class Kafka(Service):
    """Apache Kafka in KRaft mode (broker + controller in one JVM), jars fetched by Maven."""

    name = "kafka"
    start_timeout = 90.0

    def __init__(self, settings: Settings):
        super().__init__(settings)
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.libs = self.dir / "libs"
        self.data = self.dir / "data"
        self.config = self.dir / "server.properties"

    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def controller_port(self) -> int:
        return self.port + 1 if self.port != 19092 else DEFAULT_KAFKA_CONTROLLER_PORT

    def ports(self) -> list[int]:
        return [self.port, self.controller_port()]

    def libs_current(self, libs: Path | None = None) -> bool:
        """The jars in ``libs`` (default: the broker's) were fetched from the current deploy/pom.xml."""
        libs = libs or self.libs
        stamp = libs.parent / f"{libs.name}.stamp"
        return libs.is_dir() and stamp.exists() and stamp.read_text() == pom_digest()

    def fetch_libs(self, progress: Progress, libs: Path | None = None) -> None:
        """The broker's and Kafka's own tools' jars (deploy/pom.xml) into ``libs`` (default: the
        broker's), unless current."""
        libs = libs or self.libs
        if self.libs_current(libs):
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise ServiceError("kafka needs java and mvn on PATH (deploy/bootstrap.sh installs them)")
        progress("kafka: fetching broker and tool jars with Maven (deploy/pom.xml; first time only)")
        libs.parent.mkdir(parents=True, exist_ok=True)
        if libs.is_symlink():
            libs.unlink()
        shutil.rmtree(libs, ignore_errors=True)
        t0 = time.monotonic()
        res = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}"],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise ServiceError(f"Maven could not fetch the Kafka jars:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        (libs.parent / f"{libs.name}.stamp").write_text(pom_digest())
        progress(f"kafka: {len(list(libs.glob('*.jar')))} jars fetched in {time.monotonic() - t0:.1f} s")

    def tool_libs(self, progress: Progress) -> Path:
        """Jars to run Kafka's own tools from: the broker's when they are current; otherwise (the
        broker was set up from an older pom and may be running on them) a folder of their own, so
        the running broker's jars are never replaced under it."""
        if self.libs_current():
            return self.libs
        if not _alive(self.pid()):  # no broker on them: bring the broker's own jars up to date
            self.fetch_libs(progress)
            return self.libs
        own = self.dir / "tool-libs"
        self.fetch_libs(progress, own)
        return own

    def tool_argv(self, main_class: str, args: list[str], libs: Path | None = None) -> list[str]:
        """The command line that runs one of Kafka's own tools (e.g. the console producer) from
        the runner's jars, quietly (warnings only, on stderr)."""
        return ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'tools-log4j2.xml'}",
                "-cp", str((libs or self.libs) / "*"), main_class, *args]

    def prepare(self, progress: Progress) -> None:
        self.fetch_libs(progress)
        controller_port = self.controller_port()
        kafka_security.write_private(self.config, (
            (DEPLOY_DIR / "kafka" / "server.properties")
            .read_text()
            .replace("@SECURITY@", self._security_block())
            .replace("@HOST@", self.host)
            .replace("@PORT@", str(self.port))
            .replace("@CONTROLLER_PORT@", str(controller_port))
            .replace("@DATA@", str(self.data))
            .replace("@PARTITIONS@", str(self.settings.partitions))
        ))
        secured = kafka_clients.secured(self.settings)
        if (self.data / "meta.properties").exists():
            if secured and not self.scram_stamp.exists():
                raise ServiceError(
                    f"kafka: {self.data} was formatted without SASL (no admin credential in its metadata); "
                    f"stop the services, move that folder away and start again (its topics are lost)")
            return
        argv = ["-cp", str(self.libs / "*"), *self._log4j(), "kafka.tools.StorageTool",
                "format", f"--cluster-id={new_cluster_id()}", "-c", str(self.config), "--standalone"]
        argfile = self.dir / "format.args"
        if secured:  # the admin's SCRAM credential goes into the metadata log, via a 0600 @argfile
            argv = [f"@{kafka_security.scram_bootstrap_argfile(argfile, argv, self.admin_password())}"]
        try:
            res = subprocess.run(["java", *argv], capture_output=True, text=True)
        finally:
            argfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{redact(res.stdout)}{redact(res.stderr)}")
        if secured:
            self.scram_stamp.write_text("admin SCRAM credential bootstrapped at format\n")

    @property
    def scram_stamp(self) -> Path:
        return self.dir / "scram.stamp"

    def admin_password(self) -> str:
        return ensure_secret(kafka_clients.secret_file(self.settings, ADMIN))

    def _security_block(self) -> str:
        if not kafka_clients.secured(self.settings):
            return kafka_security.plaintext_block(self.host, self.port, self.controller_port())
        keystore = kafka_security.pem_keystore(self._ca_dir(), self.dir / "tls", self.host)
        controller_password = ensure_secret(secret_path(self.settings.state_dir, "kafka-controller"))
        return kafka_security.sasl_ssl_block(self.host, self.port, self.controller_port(), keystore,
                                             kafka_clients.ca_file(self.settings), self.admin_password(),
                                             controller_password)

    def _ca_dir(self) -> Path:
        """The local CA that issues the broker's certificate: the one beside VR_KAFKA_CA_FILE when
        its key is there (a private broker of a test shares the installation's CA), else the state
        folder's. A CA of your own without its key here cannot issue: run your own broker then."""
        given = kafka_clients.ca_file(self.settings)
        if (given.parent / "ca.key").exists():
            return given.parent
        if self.settings.kafka_ca_file:
            raise ServiceError(f"kafka: VR_KAFKA_CA_FILE={given} has no CA key beside it; the local runner "
                               f"issues its broker certificate from its own CA (unset it, or run your own broker)")
        return self.settings.state_dir / "ca"

    def up(self, progress: Progress) -> tuple[ServiceStatus, float | None]:
        """Start, then give every component principal its secret and SCRAM credential."""
        result = super().up(progress)
        if kafka_clients.secured(self.settings):
            created = ensure_principals(self.settings, COMPONENTS)
            if created:
                progress(f"kafka: SCRAM principals created: {', '.join(created)} (secrets in "
                         f"{self.settings.state_dir / 'secrets'})")
        return result

    def _log4j(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'kafka' / 'log4j2.xml'}",
                f"-Dkafka.logs.dir={self.dir}"]

    def spawn(self) -> int:
        heap = self.settings.kafka_heap
        return self._popen(
            ["java", f"-Xmx{heap}", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             *self._log4j(), "-cp", str(self.libs / "*"), "kafka.Kafka", str(self.config)]
        )

    def healthy(self) -> tuple[bool, str]:
        if not _port_open(self.host, self.port):
            return False, f"port {self.port} closed"
        try:
            admin = kafka_clients.admin(self.settings, ADMIN, request_timeout_ms=3000)
            try:
                brokers = admin.describe_cluster().get("brokers", [])
            finally:
                admin.close()
            return (bool(brokers), f"{len(brokers)} broker(s) in metadata")
        except Exception as exc:  # any client error means "not healthy yet"
            return False, f"metadata request failed: {type(exc).__name__}: {exc}"


# ------------------------------------------------------------------------------------- Mosquitto
class Mosquitto(Service):
    """Mosquitto from Debian's packages, accounts and rules in its dynamic-security plugin.

    On every start the plugin's config file gets the service and admin accounts and roles as
    ``vreserve.mqtt_access`` defines them (sites added at run time are kept). Passwords are
    generated per installation into the state folder's secrets (0600), unless VR_MQTT_URL carries
    the service account's password.
    """

    name = "mosquitto"
    start_timeout = 20.0

    def __init__(self, settings: Settings):
        super().__init__(settings)
        addr = settings.mqtt
        self.host, self.port = addr.host, addr.port
        self.username = addr.username or DEFAULT_MQTT_USER
        self.config = self.dir / "mosquitto.conf"
        self.dynsec = self.dir / "dynamic-security.json"

    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def service_password(self) -> str:
        """The URL's password, else the generated secret (created here on first start)."""
        given = self.settings.mqtt.password if urlsplit(self.settings.mqtt_url).password else None
        return given or ensure_secret(secret_path(self.settings.state_dir, mqtt_secret_name(self.username)))

    def prepare(self, progress: Progress) -> None:
        binary = _find_binary("mosquitto", ["/usr/sbin/mosquitto"])
        if binary is None:
            raise ServiceError("mosquitto is not installed (deploy/bootstrap.sh runs apt-get install mosquitto)")
        plugin = _dynsec_plugin()
        (self.dir / "data").mkdir(exist_ok=True)
        self.config.write_text(
            (DEPLOY_DIR / "mosquitto" / "mosquitto.conf")
            .read_text()
            .replace("@LISTENERS@", self._listeners())
            .replace("@DYNSEC_PLUGIN@", plugin)
            .replace("@DIR@", str(self.dir))
        )
        admin_password = ensure_secret(secret_path(self.settings.state_dir, mqtt_secret_name(ADMIN_USER)))
        existing = None
        if self.dynsec.exists():
            try:
                existing = json.loads(self.dynsec.read_text())
            except ValueError:
                progress(f"mosquitto: {self.dynsec} unreadable, starting with no sites")
        doc = render_config(existing, self.username, self.service_password(), admin_password)
        tmp = self.dynsec.with_name(self.dynsec.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        tmp.replace(self.dynsec)

    def _listeners(self) -> str:
        """TLS with a certificate from the local CA; plain TCP only when VR_MQTT_URL says mqtt://."""
        if not self.settings.mqtt.tls:
            return f"# plain TCP: VR_MQTT_URL asks for mqtt:// (not encrypted)\nlistener {self.port} {self.host}"
        ca_dir = self.settings.state_dir / "ca"
        cert, key = ensure_server_cert(ca_dir, self.dir / "tls", "mosquitto", [self.host])
        return "\n".join([
            f"listener {self.port} {self.host}",
            f"cafile {ca_dir / 'ca.crt'}",
            f"certfile {cert}",
            f"keyfile {key}",
            "tls_version tlsv1.2",
        ])

    def spawn(self) -> int:
        binary = _find_binary("mosquitto", ["/usr/sbin/mosquitto"])
        return self._popen([binary, "-c", str(self.config)])

    def healthy(self) -> tuple[bool, str]:
        if not _port_open(self.host, self.port):
            return False, f"port {self.port} closed"
        if "mosquitto_dynamic_security" not in (self.config.read_text() if self.config.exists() else ""):
            return False, ("running with a configuration from before the dynamic-security plugin: "
                           "run `vreserve services down` and `vreserve services up` once")
        client = new_client(self.settings.mqtt, f"vr-health-{uuid.uuid4().hex[:8]}",
                            username=self.username, password=self.service_password())
        try:
            rc = connect_and_wait(client, self.settings.mqtt, timeout=3)
        except (OSError, BrokerError) as exc:
            return False, f"connect failed: {exc}"
        finally:
            client.loop_stop()
            client.disconnect()
        if rc is None:
            return False, "no CONNACK within 3 s"
        return (not rc.is_failure, f"CONNACK {rc}")


def _dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin (Debian ships it in the mosquitto package)."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
    if not found:
        raise ServiceError("mosquitto_dynamic_security.so not found (apt-get install mosquitto, version 2.0 or newer)")
    return found[0]


# ------------------------------------------------------------------------------------ PostgreSQL
#: the cluster's TimescaleDB settings, included from postgresql.conf
TIMESCALEDB_CONF = "vreserve-timescaledb.conf"


class Postgres(Service):
    """PostgreSQL from Debian's packages, in a project-owned cluster: TLS only (certificate from
    the local CA), scram-sha-256 passwords, no trust (``deploy/pg_security.py``)."""

    name = "postgres"
    start_timeout = 60.0

    def __init__(self, settings: Settings, preload_timescaledb: bool = True):
        """``preload_timescaledb=False``: the extension installed but not preloaded, as on a server
        where it was installed without being configured (tests of the migration variant choice)."""
        super().__init__(settings)

        self.preload_timescaledb = preload_timescaledb

        info = conninfo_to_dict(settings.pg_dsn)
        self.host = info.get("host") or "127.0.0.1"
        self.port = int(info.get("port") or 5432)
        self.user = info.get("user") or "vreserve"
        self.dbname = info.get("dbname") or "vreserve"
        self.home = self._home()
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"

    def _home(self) -> Path:
        """Where the cluster lives: the state folder, unless the 'postgres' user (which runs the
        server when we are root) cannot enter it, e.g. a checkout inside a 0700 temp folder; then a
        per-checkout folder under /var/tmp that it owns, linked from the state folder."""
        if os.geteuid() != 0:
            return self.dir
        link = self.dir / "cluster"
        if link.is_symlink():
            # Decided at the first start; deciding again could pick the other place once the state
            # folder exists (a missing folder fails the probe) and lose track of a running server.
            return Path(os.readlink(link))
        if (self.dir / "data").exists():
            return self.dir
        self.dir.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(self.dir)],
                               capture_output=True)
        if probe.returncode == 0:
            return self.dir
        digest = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"vreserve-postgres-{digest}"

    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.dbname}"

    def _bin(self, tool: str) -> str:
        """The cluster's server tools: the private copy with TimescaleDB when there is one."""
        private = sorted(glob.glob(str(self.home / "server" / "lib" / "postgresql" / "*" / "bin" / tool)),
                         key=_pg_version, reverse=True)
        return private[0] if private else self._system_bin(tool)

    def _system_bin(self, tool: str) -> str:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=_pg_version, reverse=True)
        if candidates:
            return candidates[0]
        found = shutil.which(tool)
        if found is None:
            raise ServiceError(f"PostgreSQL's {tool} not found (apt-get install postgresql)")
        return found

    def _as_owner(self) -> list[str]:
        """PostgreSQL refuses to run as root; as root we run it as the 'postgres' system user."""
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", "postgres", "--"]

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
                os.chown(p, pw.pw_uid, pw.pw_gid)

    def prepare(self, progress: Progress) -> None:
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceError("running as root needs the 'postgres' system user (apt-get install postgresql)") from None
        if self.home != self.dir:
            self.home.mkdir(parents=True, exist_ok=True)
            link = self.dir / "cluster"
            if not link.is_symlink():
                link.symlink_to(self.home)
        if not (self.data / "PG_VERSION").exists():
            progress(f"postgres: initdb in {self.data} (first time only)")
            shutil.rmtree(self.data, ignore_errors=True)
            self.data.mkdir(parents=True)
            self._chown(self.home)
            # the bootstrap user's password from a 0600 file the server's user can read, then gone
            pwfile = self.home / "initdb.pw"
            kafka_security.write_private(pwfile, self.password() + "\n")
            self._chown(pwfile)
            try:
                res = subprocess.run(
                    [*self._as_owner(), self._bin("initdb"), "-D", str(self.data), "-U", self.user,
                     "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],
                    capture_output=True, text=True,
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if res.returncode != 0:
                raise ServiceError(f"initdb failed:\n{res.stdout}{res.stderr}")
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# vreserve local runner\n"
                    f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.home}'\n"
                    "max_connections = 200\nshared_buffers = 256MB\n"
                    "fsync = on\nsynchronous_commit = on\n"
                    "timezone = 'UTC'\nlog_min_messages = warning\n"
                )
        self._configure_timescaledb(progress)
        self._configure_security(progress)
        self.log.touch()
        self._chown(self.log)

    def password(self) -> str:
        """The DSN's password, else the generated secret (created here on first start)."""

        return conninfo_to_dict(self.settings.pg_dsn).get("password") or \
            ensure_secret(self.settings.secrets_folder / f"{pg_security.secret_name(self.user)}.secret")

    def _configure_security(self, progress: Progress) -> None:
        """TLS and scram-only pg_hba.conf at every start; the role's password set (single-user
        mode, statement on stdin) whenever the secret changed; the clients' 0600 password file."""
        tls = self.home / "tls"
        cert, key = ensure_server_cert(self.settings.state_dir / "ca", tls, "postgres", [self.host])
        self._chown(tls)
        for name, text in ((pg_security.TLS_CONF, pg_security.tls_conf(cert, key)),
                           ("pg_hba.conf", pg_security.hba_conf(self.host))):
            kafka_security.write_private(self.data / name, text)
            self._chown(self.data / name)
        main_conf = self.data / "postgresql.conf"
        if f"'{pg_security.TLS_CONF}'" not in main_conf.read_text():
            with open(main_conf, "a") as f:
                f.write(f"include_if_exists = '{pg_security.TLS_CONF}'\n")
        password = self.password()
        stamp = self.data / "vreserve-password.stamp"
        if not stamp.exists() or stamp.read_text() != pg_security.fingerprint(password):
            res = subprocess.run([*self._as_owner(), self._bin("postgres"), "--single", "-D", str(self.data), "postgres"],
                                 input=pg_security.alter_password_sql(self.user, password), capture_output=True, text=True)
            if res.returncode != 0 or "ERROR" in res.stdout + res.stderr:
                raise ServiceError(f"postgres: could not set the password of role {self.user}:\n"
                                   f"{redact(res.stderr)[-1500:]}")
            stamp.write_text(pg_security.fingerprint(password))
            progress(f"postgres: password of role {self.user} set from {self.settings.secrets_folder}")
        pg_security.write_passfile(self.settings.secrets_folder / PG_PASSFILE, self.user, password)

    def _configure_timescaledb(self, progress: Progress) -> None:
        """Install TimescaleDB when the server cannot load it (built once, cached in the state
        folder), then preload it in this cluster, or leave the cluster plain with one line why.
        The settings live in an included file rewritten at every start, so the server never
        preloads a library that has gone missing."""
        system_bindir = Path(self._system_bin("initdb")).parent
        outcome = timescaledb.ensure(self.settings.state_dir / "timescaledb", str(system_bindir / "pg_config"), progress)
        progress(f"postgres: {outcome.line}" + ("" if self.preload_timescaledb else " (installed, not preloaded)"))
        if outcome.stage is not None:
            timescaledb.private_server(system_bindir, outcome.stage, self.home / "server", progress)
        else:  # the system's server (with or without TimescaleDB of its own)
            shutil.rmtree(self.home / "server", ignore_errors=True)
        conf = self.data / TIMESCALEDB_CONF
        conf.write_text(timescaledb.preload_conf(outcome.available and self.preload_timescaledb))
        self._chown(conf)
        main_conf = self.data / "postgresql.conf"
        if f"'{TIMESCALEDB_CONF}'" not in main_conf.read_text():
            with open(main_conf, "a") as f:
                f.write(f"include_if_exists = '{TIMESCALEDB_CONF}'\n")

    def spawn(self) -> int:
        res = subprocess.run(
            # the settings' address wins over the one postgresql.conf got when the cluster was made,
            # so a changed VR_PG_DSN port is where the server listens (not silently the old one)
            [*self._as_owner(), self._bin("pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log),
             "-o", f"-p {self.port} -h {self.host}", "-w", "-t", str(int(self.start_timeout))],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise ServiceError(f"pg_ctl start failed:\n{res.stdout}{res.stderr}\n{_tail(self.log)}")
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self._ensure_database()
        return pid

    def _ensure_database(self) -> None:
        with psycopg.connect(self.settings.pg_dsn, dbname="postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def ensure_roles(self, progress: Progress) -> None:
        """The migration owner and the components' roles (vreserve/db_access.py), each with its
        generated password in the secrets folder and the password file; idempotent."""

        if self.settings.pg_roles == "single":
            return
        with psycopg.connect(self.settings.pg_dsn, dbname="postgres", autocommit=True) as conn:
            created = db_access.ensure_roles(conn, self.settings.secrets_folder)
        if created:
            progress(f"postgres: roles {', '.join(created)} created (passwords in {self.settings.secrets_folder})")

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def terminate(self, pid: int) -> None:
        subprocess.run(
            [*self._as_owner(), self._bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"],
            capture_output=True,
        )

    def healthy(self) -> tuple[bool, str]:
        try:
            with psycopg.connect(self.settings.pg_dsn, connect_timeout=3) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
                variant = server_variant(conn, prove=False)
                uses = recorded_variant(conn)
            database = f"database {self.dbname}: {uses} variant" if uses else f"database {self.dbname}: not migrated"
            return True, f"PostgreSQL {version}, {variant.reason if variant.timescale else 'plain: ' + variant.reason}; {database}"
        except psycopg.Error as exc:
            return False, f"query failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"


def _pg_version(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


def _find_binary(name: str, fallbacks: list[str]) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in fallbacks if os.access(p, os.X_OK)), None)


# --------------------------------------------------------------------------------------- runner
def all_services(settings: Settings) -> list[Service]:
    """In start order: the database and broker first, Kafka (slowest) last."""
    return [Postgres(settings), Mosquitto(settings), Kafka(settings)]


def up(settings: Settings, progress: Progress = print) -> dict[str, tuple[ServiceStatus, float | None]]:
    """Start every service that is not running; a second call is a no-op. Raises ServiceError."""
    results = {}
    for service in all_services(settings):
        results[service.name] = service.up(progress)
        if isinstance(service, Postgres):
            service.ensure_roles(progress)
    return results


def down(settings: Settings, progress: Progress = print) -> list[str]:
    """Stop every service this runner started; returns the names stopped."""
    return [s.name for s in reversed(all_services(settings)) if s.down(progress)]


def status(settings: Settings) -> list[ServiceStatus]:
    return [s.status() for s in all_services(settings)]
