"""Settings, read once from the environment and passed down as a frozen object.

Every variable has the prefix ``VR_``; the defaults point at the project's own local services
(``vreserve services up``), so a fresh checkout works with no configuration at all.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

PREFIX = "VR_"

#: Project root (the folder holding pyproject.toml); the runner keeps its state below it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_MQTT_PORT = 11883
DEFAULT_PG_PORT = 55432
#: Local-only credentials of the broker's service account (bridge, tools, tests). The local
#: Mosquitto listens on loopback only; a real deployment sets VR_MQTT_URL with its own secret.
DEFAULT_MQTT_USER = "vr-service"
DEFAULT_MQTT_PASSWORD = "vr-service-local"


@dataclass(frozen=True)
class Settings:
    """Where the services are and how the stages talk to them.

    Attributes map one to one to environment variables: ``kafka_bootstrap`` is
    ``VR_KAFKA_BOOTSTRAP`` and so on. Build with :meth:`from_env`; derive variants with
    :meth:`with_` (tests use that for a private topic prefix and database).
    """

    kafka_bootstrap: str = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
    mqtt_url: str = (
        f"mqtt://{DEFAULT_MQTT_USER}:{DEFAULT_MQTT_PASSWORD}@127.0.0.1:{DEFAULT_MQTT_PORT}"
    )
    pg_dsn: str = f"postgresql://vreserve@127.0.0.1:{DEFAULT_PG_PORT}/vreserve"
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
                if name in _RESERVED:
                    continue
                raise ValueError(
                    f"unknown setting {key}; known: "
                    + ", ".join(PREFIX + n.upper() for n in sorted(known))
                )
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
        return MqttAddress.parse(self.mqtt_url)

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``readings``."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """Consumer group id for a logical consumer such as ``bridge``."""
        return f"{self.topic_prefix}{name}"


#: VR_ variables that are not settings of the running stages (test and CI switches).
_RESERVED = {"test_keep_services", "services_started_by"}


def _coerce(type_name: object, raw: str, key: str) -> object:
    t = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if t == "int":
            return int(raw)
        if t == "float":
            return float(raw)
        if t == "Path":
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"{key}={raw!r}: expected {t}") from exc
    return raw


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> "MqttAddress":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"VR_MQTT_URL must start with mqtt://, got {url!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 1883,
            username=parts.username,
            password=parts.password,
        )
