"""Settings, read once from the environment and passed down as a frozen object.

Every variable has the prefix ``VR_``; the defaults point at the project's own local services
(``vreserve services up``), so a fresh checkout works with no configuration at all.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from vreserve.secret_store import read_secret, secret_path

PREFIX = "VR_"

#: Project root (the folder holding pyproject.toml); the runner keeps its state below it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_MQTT_PORT = 11883
DEFAULT_PG_PORT = 55432
#: The broker's service account (bridge, tools, tests). Its password is generated per installation
#: by the runner and kept in ``<state_dir>/secrets/mqtt-vr-service.secret``; a URL without a
#: password reads it from there. There is no default password anywhere in the code.
DEFAULT_MQTT_USER = "vr-service"
MQTT_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
KAFKA_SECURITY = ("SASL_SSL", "PLAINTEXT")
PG_ROLE_MODES = ("separate", "single")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A VR_* variable is unknown or malformed; the message never holds a secret."""


@dataclass(frozen=True)
class Settings:
    """Where the services are and how the stages talk to them.

    Attributes map one to one to environment variables: ``kafka_bootstrap`` is
    ``VR_KAFKA_BOOTSTRAP`` and so on. Build with :meth:`from_env`; derive variants with
    :meth:`with_` (tests use that for a private topic prefix and database).
    """

    kafka_bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
    #: ``SASL_SSL`` (SCRAM-SHA-512 over TLS, each component its own principal) or ``PLAINTEXT``
    #: (an explicit opt-out: no encryption, no authentication, no ACLs).
    kafka_security: str = "SASL_SSL"
    #: CA certificate that signed the broker's certificate. Empty: the runner's local CA
    #: (``<state_dir>/ca/ca.crt``); set it to use your own PKI.
    kafka_ca_file: str = ""
    #: Folder of the components' Kafka secrets (``kafka-<principal>.secret``, 0600). Empty: the
    #: state folder's ``secrets/``; set it when a process keeps its state elsewhere.
    secrets_dir: str = ""
    #: Broker URL: ``mqtt://`` or ``mqtts://`` (TLS); without a password in it, the account's
    #: password is read from the state folder's secrets (see :func:`mqtt_secret_name`).
    mqtt_url: str = f"mqtts://{DEFAULT_MQTT_USER}@127.0.0.1:{DEFAULT_MQTT_PORT}"
    #: CA certificate that signed the broker's TLS certificate (``mqtts://`` only). Empty: the
    #: runner's local CA in the state folder (``ca/ca.crt``); set it to use your own PKI.
    mqtt_ca_file: str = ""
    #: Without ``sslmode`` it gets ``sslmode=verify-full`` against ``VR_PG_CA_FILE``; without a
    #: password it gets ``passfile=<secrets>/pgpass`` (0600, written by the runner): the password is
    #: never in the DSN, argv or the environment. ``sslmode=disable`` in it is an explicit opt-out.
    pg_dsn: str = f"postgresql://vreserve@127.0.0.1:{DEFAULT_PG_PORT}/vreserve"
    #: CA certificate that signed PostgreSQL's certificate. Empty: the local CA (``<state_dir>/ca/ca.crt``).
    pg_ca_file: str = ""
    #: ``separate`` (default): each component logs in as its own least-privilege role
    #: (``vreserve/db_access.py``: VR_PG_DSN with the user replaced, password from the password
    #: file); ``single``: every component uses VR_PG_DSN as given (a DBA handed out one login).
    pg_roles: str = "separate"
    #: Prepended to every Kafka topic and consumer group; lets tests and demos share a broker.
    topic_prefix: str = "vr."
    #: Partitions of every topic the project creates (keyed topics keep per-key order).
    partitions: int = 4
    #: Where the local runner keeps jars, configs, data and logs (git-ignored).
    state_dir: Path = PROJECT_ROOT / ".vr"
    #: Reading interval the fleet is configured for, in seconds; staleness is counted in these.
    reading_interval_s: float = 10.0
    #: Faust web (health endpoint) port of the stream worker.
    stream_web_port: int = 16066
    log_level: str = "INFO"
    #: host:port the HTTP API (`vreserve serve`) listens on; loopback by default.
    http_addr: str = "127.0.0.1:18080"
    #: ISO 4217 code of the minor units every amount of money is counted in (settlement, contracts).
    currency: str = "CNY"
    #: Heap of the local runner's Kafka JVM (``-Xmx``), e.g. ``1g`` or ``512m``.
    kafka_heap: str = "1g"

    def __post_init__(self) -> None:
        """Check values whose mistakes would otherwise surface later as tracebacks."""
        MqttAddress.check_url(self.mqtt_url)
        if str(self.log_level).upper() not in LOG_LEVELS:
            raise SettingsError(f"VR_LOG_LEVEL={self.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
        if not re.fullmatch(r"[0-9]+[kmgKMG]?", str(self.kafka_heap)):
            raise SettingsError(f"VR_KAFKA_HEAP={self.kafka_heap!r}: expected a JVM size such as 1g or 512m")
        if self.kafka_security not in KAFKA_SECURITY:
            raise SettingsError(f"VR_KAFKA_SECURITY={self.kafka_security!r}: expected one of {', '.join(KAFKA_SECURITY)}")
        if self.pg_roles not in PG_ROLE_MODES:
            raise SettingsError(f"VR_PG_ROLES={self.pg_roles!r}: expected one of {', '.join(PG_ROLE_MODES)}")
        if self.partitions < 1:
            raise SettingsError(f"VR_PARTITIONS={self.partitions}: expected at least 1")
        object.__setattr__(self, "pg_dsn", secured_pg_dsn(self.pg_dsn, self.secrets_folder, self.pg_ca_path))

    @property
    def secrets_folder(self) -> Path:
        """Where the generated secrets are: ``VR_SECRETS_DIR``, else ``<state_dir>/secrets``."""
        return Path(self.secrets_dir).resolve() if self.secrets_dir else (Path(self.state_dir) / "secrets").resolve()

    def pg_dsn_for(self, role: str) -> str:
        """The DSN a component connects with: VR_PG_DSN logged in as ``role`` (one of
        ``vreserve.db_access``'s roles), its password read from the password file at connect time.
        With ``VR_PG_ROLES=single`` it is VR_PG_DSN itself."""
        # lazy: psycopg costs ~0.2 s to import, and processes without a database (the fleet) read settings
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        if self.pg_roles == "single":
            return self.pg_dsn
        info = conninfo_to_dict(self.pg_dsn)
        info.pop("password", None)
        passfile = Path(info.get("passfile") or self.secrets_folder / PG_PASSFILE)
        if passfile.name == PG_PASSFILE:  # the runner's file: the role's own one beside it
            info["passfile"] = str(passfile.with_name(role_passfile(role)))
        return make_conninfo(**{**info, "user": role})

    @property
    def pg_ca_path(self) -> Path:
        return Path(self.pg_ca_file).resolve() if self.pg_ca_file else (Path(self.state_dir) / "ca" / "ca.crt").resolve()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read ``VR_*`` variables once; unknown ``VR_*`` names are an error, not a silent typo."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        values: dict[str, object] = {}
        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX):].lower()
            if name not in known:
                if name in SWITCHES:
                    continue
                raise SettingsError(f"unknown setting {key}; known: " + ", ".join(sorted(known_names())))
            values[name] = _coerce(known[name].type, raw, key)
        return cls(**values)

    @property
    def http_host_port(self) -> tuple[str, int]:
        """VR_HTTP_ADDR split into (host, port); raises ValueError on anything else."""
        host, sep, port = self.http_addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"VR_HTTP_ADDR must be host:port, got {self.http_addr!r}")
        return host.strip("[]"), int(port)

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)

    @property
    def mqtt(self) -> "MqttAddress":
        """The service account's broker address; password from the URL or the state folder."""
        return MqttAddress.parse(self.mqtt_url, self.state_dir, self.mqtt_ca_file)

    @property
    def mqtt_admin(self) -> "MqttAddress":
        """The broker's provisioning account (``vr-admin``): same broker, secret in the state folder."""
        from vreserve.mqtt_access import ADMIN_USER  # lazy: only the provisioning commands need the broker's rules

        service = self.mqtt
        return replace(service, username=ADMIN_USER,
                       password=read_secret(secret_path(self.state_dir, mqtt_secret_name(ADMIN_USER))))

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``readings``."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """Consumer group id for a logical consumer such as ``bridge``."""
        return f"{self.topic_prefix}{name}"


#: VR_ variables that are not settings of the running stages (test and CI switches), with what
#: they do. Together with the fields of :class:`Settings` this is the one list of every VR_ name
#: the project reads; tests/vreserve checks that no other VR_ name appears anywhere in the code.
SWITCHES = {
    "test_keep_services": "bootstrap.sh test: leave the services it started running",
    "test_keep_databases": "test fixtures: keep each session's database after the run",
    "services_started_by": "set by whoever started shared services (informational)",
    "timescaledb_src": "local runner: TimescaleDB source tarball to build from (default: ../shared/vendor when present)",
}


def known_names() -> list[str]:
    """Every VR_ variable the project knows: settings and switches."""
    return [PREFIX + f.name.upper() for f in fields(Settings)] + [PREFIX + n.upper() for n in SWITCHES]


def mqtt_secret_name(username: str) -> str:
    """Name of an MQTT account's secret file in the state folder."""
    return f"mqtt-{username}"


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=...`` replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", str(text))
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", text)


#: The local runner's libpq password file (``host:port:db:user:password`` lines, 0600).
PG_PASSFILE = "pgpass"


def role_passfile(role: str) -> str:
    """A component role's own password file (0600, its line only): a component reads no other
    role's password, the bootstrap superuser's included."""
    return f"{PG_PASSFILE}-{role}"


def secured_pg_dsn(dsn: str, secrets: Path, ca_file: Path) -> str:
    """``dsn`` with TLS verification and the password file added where it says nothing of them."""
    # lazy: psycopg costs ~0.2 s to import, and processes without a database (the fleet) read settings
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        info = conninfo_to_dict(dsn)
    except ProgrammingError:
        raise SettingsError(f"VR_PG_DSN={redact(dsn)!r}: not a PostgreSQL connection string") from None
    extra: dict[str, str] = {}
    if "sslmode" not in info:
        extra["sslmode"] = "verify-full"
    if (info.get("sslmode") or extra.get("sslmode")) in ("verify-full", "verify-ca") and "sslrootcert" not in info:
        extra["sslrootcert"] = str(ca_file)
    if "password" not in info and "passfile" not in info:
        extra["passfile"] = str(secrets / PG_PASSFILE)
    return make_conninfo(dsn, **extra) if extra else dsn


def _coerce(type_name: object, raw: str, key: str) -> object:
    t = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if t == "int":
            return int(raw)
        if t == "float":
            return float(raw)
        if t == "Path":
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{key}={redact(raw)!r}: expected {t}") from None
    return raw


@dataclass(frozen=True)
class MqttAddress:
    """Where the broker is and how to log in. ``repr`` hides the password."""

    host: str
    port: int
    username: str | None
    password: str | None = field(default=None, repr=False)
    #: TLS (``mqtts://``): verify the broker's certificate against ``ca_file``.
    tls: bool = False
    ca_file: Path | None = None

    @staticmethod
    def check_url(url: str) -> None:
        """Raise :class:`SettingsError` (password redacted) unless ``url`` is a broker URL."""
        try:
            parts = urlsplit(str(url))
            port = parts.port
        except ValueError:
            raise SettingsError(f"VR_MQTT_URL={redact(url)!r}: not a URL (bad port?)") from None
        if parts.scheme not in MQTT_SCHEMES:
            raise SettingsError(f"VR_MQTT_URL={redact(url)!r}: must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise SettingsError(f"VR_MQTT_URL={redact(url)!r}: no host")
        if port == 0:
            raise SettingsError(f"VR_MQTT_URL={redact(url)!r}: port 0")

    @classmethod
    def parse(cls, url: str, state_dir: Path | None = None, ca_file: str = "") -> "MqttAddress":
        """Parse a broker URL; a missing password is the account's secret in ``state_dir``."""
        cls.check_url(url)
        parts = urlsplit(url)
        tls = MQTT_SCHEMES[parts.scheme]
        password = parts.password
        if password is None and parts.username and state_dir is not None:
            password = read_secret(secret_path(state_dir, mqtt_secret_name(parts.username)))
        ca = Path(ca_file) if ca_file else (Path(state_dir) / "ca" / "ca.crt" if state_dir is not None else None)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=parts.username,
            password=password,
            tls=tls,
            ca_file=ca if tls else None,
        )
