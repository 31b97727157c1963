"""The local Kafka broker's security: TLS listeners with a certificate from the local CA, SASL
(SCRAM-SHA-512 for clients, PLAIN for the controller quorum inside the one JVM), the
StandardAuthorizer that denies what no ACL allows, and the bootstrap of the admin principal.

Pure rendering apart from the files written (0600); the principals and ACLs themselves are made
over the admin API by ``vreserve.kafka_admin`` once the broker is up.
"""
from __future__ import annotations

from pathlib import Path

from deploy import pki
from deploy.pki import ensure_server_cert
from vreserve.kafka_access import ADMIN
from vreserve.kafka_clients import KafkaLogin

#: The controller quorum's own login (PLAIN on the controller listener; SCRAM credentials live in
#: the metadata log, which the controller must read before it could check them).
CONTROLLER_USER = "vr-controller"
MECHANISM = "SCRAM-SHA-512"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` 0600 from the first byte (it holds secrets)."""
    pki.write_private(path, text.encode())


def pem_keystore(ca_dir: Path, tls_dir: Path, host: str) -> Path:
    """The broker's key and certificate (local CA) in one PEM file, as Kafka's PEM keystore wants."""
    cert, key = ensure_server_cert(ca_dir, tls_dir, "kafka", [host])
    store = tls_dir / "keystore.pem"
    write_private(store, key.read_text() + cert.read_text())
    return store


def plaintext_block(host: str, port: int, controller_port: int) -> str:
    return "\n".join([
        "# PLAINTEXT: VR_KAFKA_SECURITY asks for no encryption and no authentication",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ])


def sasl_ssl_block(host: str, port: int, controller_port: int, keystore: Path, ca_cert: Path,
                   admin_password: str, controller_password: str) -> str:
    """Both listeners SASL_SSL; clients SCRAM-SHA-512, the quorum PLAIN; deny unless an ACL allows."""
    controller_jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                       f'username="{CONTROLLER_USER}" password="{controller_password}" '
                       f'user_{CONTROLLER_USER}="{controller_password}";')
    broker_jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                   f'username="{ADMIN}" password="{admin_password}";')
    return "\n".join([
        f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=SASL_SSL://{host}:{port}",
        "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={broker_jaas}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={controller_jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca_cert}",
        "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
        "ssl.endpoint.identification.algorithm=https",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN};User:{CONTROLLER_USER}",
        "allow.everyone.if.no.acl.found=false",
    ])


def client_properties(login: KafkaLogin, ca_cert: Path) -> str:
    """A Java client's config (Kafka's own tools) logging in as ``login`` over TLS."""
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{login.principal}" password="{login.password}";')
    return "\n".join(["security.protocol=SASL_SSL", f"sasl.mechanism={MECHANISM}", f"sasl.jaas.config={jaas}",
                      "ssl.truststore.type=PEM", f"ssl.truststore.location={ca_cert}", ""])


def scram_bootstrap_argfile(path: Path, argv: list[str], admin_password: str) -> Path:
    """A java @argfile (0600) for the storage tool's ``format`` with the admin's SCRAM credential:
    the password must not be on a command line, where ``ps`` would show it."""
    args = [*argv, "--add-scram", f"{MECHANISM}=[name={ADMIN},password={admin_password}]"]
    write_private(path, "\n".join(_quote(a) for a in args) + "\n")
    return path


def _quote(arg: str) -> str:
    """One argument of a java @argfile (double quotes; backslashes and quotes escaped)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
