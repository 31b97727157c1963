"""``python -m deploy.compose_init /vr``: the one-shot ``init`` service of deploy/compose.yaml.

It gives the containers the local runner's posture: a CA and server certificates (for the
service names ``kafka``, ``mosquitto``, ``postgres``), generated secrets (0600) for every Kafka
principal, the MQTT accounts and the database role, Kafka's SASL_SSL ``server.properties`` and the
storage tool's argument file with the admin's SCRAM credential, Mosquitto's TLS config and
dynamic-security file, PostgreSQL's hostssl-only ``pg_hba.conf``. Idempotent: existing keys and
secrets are kept. (Not exercised on the project's machines: they have no Docker engine.)

``python -m deploy.compose_init --database`` is the second one-shot service (``db-init``), run
once PostgreSQL is up: as the bootstrap superuser it creates the migration owner and the
components' roles with their generated passwords (0600 secrets and per-role password files in
the volume), migrates as the owner and grants each role its tables: the same calls the local
runner and `vreserve db migrate` make (``vreserve.db_access.ensure_roles``, ``vreserve.db.migrate``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

from deploy import kafka_security, pg_security
from deploy.pki import ensure_server_cert
from deploy.runner import new_cluster_id
from vreserve.kafka_access import ADMIN, COMPONENTS
from vreserve.mqtt_access import ADMIN_USER, render_config
from vreserve.secret_store import ensure_secret, secret_path
from vreserve.settings import DEFAULT_MQTT_USER, PG_PASSFILE, Settings, mqtt_secret_name

#: uid/gid the images run their servers as (timescale/timescaledb: postgres = 70; eclipse-mosquitto: 1883;
#: apache/kafka: appuser = 1000).
OWNERS = {"postgres": 70, "mosquitto": 1883, "kafka": 1000}
KAFKA_LIBS = "/opt/kafka/libs"


def _secret(state: Path, name: str) -> str:
    return ensure_secret(secret_path(state, name))


def _own(path: Path, service: str) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chown(p, OWNERS[service], OWNERS[service])


def kafka(state: Path) -> None:
    out = state / "kafka"
    out.mkdir(parents=True, exist_ok=True)
    for principal in (ADMIN, *COMPONENTS):
        _secret(state, f"kafka-{principal}")
    keystore = kafka_security.pem_keystore(state / "ca", out / "tls", "kafka")
    block = kafka_security.sasl_ssl_block("kafka", 9092, 9093, keystore, state / "ca" / "ca.crt",
                                          _secret(state, f"kafka-{ADMIN}"), _secret(state, "kafka-controller"))
    template = (Path(__file__).parent / "kafka" / "server.properties").read_text()
    kafka_security.write_private(out / "server.properties", template.replace("@SECURITY@", block)
                                 .replace("@HOST@", "kafka").replace("@CONTROLLER_PORT@", "9093")
                                 .replace("@DATA@", "/var/lib/kafka/data").replace("@PARTITIONS@", "4"))
    id_file = out / "cluster.id"
    if not id_file.exists():
        id_file.write_text(new_cluster_id())
    format_argv = ["-cp", f"{KAFKA_LIBS}/*", "kafka.tools.StorageTool", "format", "--ignore-formatted",
                   f"--cluster-id={id_file.read_text().strip()}", "-c", str(out / "server.properties"), "--standalone"]
    kafka_security.scram_bootstrap_argfile(out / "format.args", format_argv, _secret(state, f"kafka-{ADMIN}"))
    _own(out, "kafka")


def mosquitto(state: Path) -> None:
    out = state / "mosquitto"
    out.mkdir(parents=True, exist_ok=True)
    cert, key = ensure_server_cert(state / "ca", out / "tls", "mosquitto", ["mosquitto"])
    conf = (Path(__file__).parent / "mosquitto" / "mosquitto.conf").read_text()
    listeners = "\n".join(["listener 8883 0.0.0.0", "cafile /vr/ca/ca.crt", f"certfile {cert}",
                           f"keyfile {key}", "tls_version tlsv1.2"])
    (out / "mosquitto.conf").write_text(conf.replace("@LISTENERS@", listeners).replace("user root", "user mosquitto")
                                        .replace("@DYNSEC_PLUGIN@", "/usr/lib/mosquitto_dynamic_security.so")
                                        .replace("@DIR@", str(out)))
    dynsec = out / "dynamic-security.json"
    existing = json.loads(dynsec.read_text()) if dynsec.exists() else None
    doc = render_config(existing, DEFAULT_MQTT_USER, _secret(state, mqtt_secret_name(DEFAULT_MQTT_USER)),
                        _secret(state, mqtt_secret_name(ADMIN_USER)))
    kafka_security.write_private(dynsec, json.dumps(doc, indent=1))
    (out / "data").mkdir(exist_ok=True)
    _own(out, "mosquitto")


def postgres(state: Path) -> None:
    out = state / "postgres"
    out.mkdir(parents=True, exist_ok=True)
    ensure_server_cert(state / "ca", out / "tls", "postgres", ["postgres"])
    kafka_security.write_private(out / "pg_hba.conf", pg_security.hba_conf("0.0.0.0").replace(
        "hostssl all  all  0.0.0.0/32  scram-sha-256", "hostssl all  all  0.0.0.0/0  scram-sha-256"))
    password = _secret(state, pg_security.secret_name("vreserve"))
    pg_security.write_passfile(state / "secrets" / PG_PASSFILE, "vreserve", password)
    kafka_security.write_private(out / "initdb.pw", password + "\n")  # POSTGRES_PASSWORD_FILE, first start
    _own(out, "postgres")


def database(settings: Settings, say: Callable[[str], None] = print) -> None:
    """The components' database roles, the schema and the grants, as the runner makes them:
    roles cluster-wide (passwords in the settings' secrets folder), then the migrations as
    ``vr_owner`` and every role's grants. Refuses a DSN that is not a superuser's, because the
    roles could not be created; refuses ``VR_PG_ROLES=single``, which asks for no roles."""
    from vreserve import db_access
    from vreserve.db import connect, migrate

    if settings.pg_roles == "single":
        raise SystemExit("compose init --database: VR_PG_ROLES=single asks for no component roles")
    with connect(settings.pg_dsn, autocommit=True) as conn:
        if conn.execute("SELECT current_setting('is_superuser')").fetchone()[0] != "on":
            raise SystemExit("compose init --database: VR_PG_DSN's user must be the bootstrap superuser")
        created = db_access.ensure_roles(conn, settings.secrets_folder)
    applied = migrate(settings.pg_dsn)
    if applied.uncovered:
        raise SystemExit(f"compose init --database: {applied.uncovered}")
    say(f"compose init: roles {', '.join(created) or 'already present'}; {len(applied)} migration(s) applied "
        f"({applied.variant.name} variant); grants set; passwords in {settings.secrets_folder} (0600)")


def main(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    kafka(state)
    mosquitto(state)
    postgres(state)
    (state / "ca").chmod(0o755)  # the CA certificate is public; its key stays 0600 (root)
    print(f"compose init: certificates and secrets in {state} (0600 keys; nothing printed)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--database"]:
        database(Settings.from_env())
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "/vr"))
