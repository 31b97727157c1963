"""Create the project's Kafka topics up front, with the partition count from settings.

Topics are never left to auto-creation: every stage agrees on partitions, so keyed records (a
site's readings, a region's mode events) keep their order and Faust's co-partitioning holds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from kafka import KafkaAdminClient
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, NewTopic,
                         ResourcePattern, ResourcePatternFilter, ResourceType, ScramMechanism,
                         UserScramCredentialUpsertion)
from kafka.errors import TopicAlreadyExistsError

from vreserve import kafka_clients, topics as topic_names
from vreserve.kafka_access import ADMIN, COMPONENTS, grants
from vreserve.secret_store import ensure_secret, new_secret, write_secret
from vreserve.settings import Settings


#: How long to wait for created topics to show in the broker's metadata, s.
VISIBLE_TIMEOUT_S = 60.0


def ensure_topics(settings: Settings, names: Iterable[str] = topic_names.ALL, principal: str = ADMIN) -> list[str]:
    """Create missing topics (logical names); returns the full names created now. As the admin
    principal (the default) this also grants every component its ACLs under the settings' topic
    prefix; a component passes its own principal and only the topics it may create."""
    created = ensure_named_topics(settings, [(settings.topic(n), settings.partitions, {}) for n in names], principal)
    if principal == ADMIN and kafka_clients.secured(settings):
        ensure_acls(settings, COMPONENTS)
    return created


def ensure_named_topics(settings: Settings, specs: list[tuple[str, int, dict[str, str]]],
                        principal: str = ADMIN) -> list[str]:
    """Create missing topics given as (full name, partitions, topic configs), then wait until every
    one of them is in the broker's metadata with a leader for each partition.

    Why the wait: a freshly started broker answers metadata requests from a cache that can lag
    the controller by seconds; a consumer group that joins in that window gets topics "not found
    in cluster metadata", Faust's assignor ignores them, and the worker then sits with no
    partitions (seen: a demo whose stream worker never consumed a record)."""
    admin = kafka_clients.admin(settings, principal)
    try:
        existing = set(admin.list_topics())
        missing = [(name, parts, cfg) for name, parts, cfg in specs if name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=1,
                                              topic_configs=dict(cfg)) for name, parts, cfg in missing])
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
        wait_until_visible(admin, {name: parts for name, parts, _ in specs})
        return [name for name, _, _ in missing]
    finally:
        admin.close()


def wait_until_visible(admin: KafkaAdminClient, partitions: dict[str, int],
                       timeout_s: float = VISIBLE_TIMEOUT_S) -> None:
    """Until each topic's metadata lists at least its partition count, each with a leader; a
    RuntimeError naming the topics still missing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pending = dict(partitions)
    while True:
        for topic in admin.describe_topics(list(pending)):
            parts = topic.get("partitions") or []
            name = topic.get("name") or topic.get("topic")
            if topic.get("error_code", 0) == 0 and len(parts) >= pending.get(name, 1) \
                    and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in parts):
                pending.pop(name, None)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not in the broker's metadata after {timeout_s:.0f} s: {', '.join(sorted(pending))}")
        time.sleep(0.2)


_OPERATIONS = {"READ": ACLOperation.READ, "WRITE": ACLOperation.WRITE, "CREATE": ACLOperation.CREATE,
               "DESCRIBE": ACLOperation.DESCRIBE, "ALL": ACLOperation.ALL}
_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERNS = {"literal": ACLResourcePatternType.LITERAL, "prefixed": ACLResourcePatternType.PREFIXED}


def ensure_acls(settings: Settings, principals: Iterable[str]) -> int:
    """Create the ACL bindings of ``principals`` under the settings' topic prefix (idempotent:
    the broker keeps one copy of a binding); returns how many were asked for. Admin only."""
    wanted = [g for p in principals for g in grants(p, settings.topic_prefix)]
    acls = [ACL(f"User:{g.principal}", "*", _OPERATIONS[g.operation], ACLPermissionType.ALLOW,
                ResourcePattern(_RESOURCES[g.resource], g.name, _PATTERNS[g.pattern])) for g in wanted]
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        result = admin.create_acls(acls)
        failed = result.get("failed") or []
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(acls)} Kafka ACLs not created, e.g. {failed[0]}")
        wait_until_authorized(admin, acls)
    finally:
        admin.close()
    return len(acls)


def _binding(acl: ACL) -> tuple:
    pattern = acl.resource_pattern
    return (acl.principal, int(pattern.resource_type), pattern.resource_name, int(pattern.pattern_type),
            int(acl.operation), int(acl.permission_type))


def wait_until_authorized(admin: KafkaAdminClient, acls: list[ACL], timeout_s: float = VISIBLE_TIMEOUT_S) -> None:
    """Until the broker's authorizer lists every binding in ``acls``. Why: a created ACL reaches
    the broker through the metadata log a moment later; a component's first request in that
    window is refused (seen: an audit record lost to TOPIC_AUTHORIZATION_FAILED right after
    its topic prefix was granted)."""
    wanted = {_binding(a) for a in acls}
    everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                           ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    deadline = time.monotonic() + timeout_s
    while True:
        found, _error = admin.describe_acls(everything)
        missing = wanted - {_binding(a) for a in found}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} Kafka ACL binding(s) not in effect after {timeout_s:.0f} s")
        time.sleep(0.1)


def set_scram_password(settings: Settings, principal: str, password: str,
                       then: Callable[[], None] | None = None) -> None:
    """Create or replace ``principal``'s SCRAM-SHA-512 credential (admin only), then run ``then``
    (e.g. write the secret file) right after the broker accepted it. Connections already logged in
    stay up; new logins need the new password."""
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(principal, ScramMechanism.SCRAM_SHA_512, password)])
    finally:
        admin.close()
    if errors.get(principal):
        raise RuntimeError(f"Kafka refused the SCRAM credential of {principal}: {errors[principal]}")
    if then is not None:
        then()


def provision_principal(settings: Settings, principal: str, rotate: bool = False) -> Path:
    """Create ``principal``'s secret if missing (or replace it with ``rotate``) and set its SCRAM
    credential to it; returns the secret's path.

    A rotation needs no restart: running components keep their logged-in connections (the broker
    does not re-authenticate them) and read the secret file again at every new login
    (``kafka_clients.LiveSecret``). The new secret is first kept beside the file (0600,
    ``.next``: a crash in between loses nothing), the broker gets it, and only then it replaces
    the file, so a component logging in meanwhile still presents the password the broker has
    until the broker's answer; the remaining window is the broker applying the credential."""
    path = kafka_clients.secret_file(settings, principal)
    if not rotate:
        set_scram_password(settings, principal, ensure_secret(path))
    else:
        pending = path.with_name(path.name + ".next")
        password = new_secret()
        write_secret(pending, password)
        set_scram_password(settings, principal, password, then=lambda: pending.replace(path))
    wait_until_login(settings, principal)
    return path


def ensure_principals(settings: Settings, principals: Iterable[str]) -> list[str]:
    """Give each principal a generated secret (0600, state folder) and a SCRAM credential on the
    broker if it has none yet; returns the principals created now."""
    principals = list(principals)
    admin = kafka_clients.admin(settings, ADMIN)
    try:
        known = admin.describe_user_scram_credentials(principals)
    finally:
        admin.close()
    created = []
    for principal in principals:
        password = ensure_secret(kafka_clients.secret_file(settings, principal))
        if not (known.get(principal) or {}).get("credential_infos"):
            set_scram_password(settings, principal, password)
            created.append(principal)
    for principal in created:
        wait_until_login(settings, principal)
    return created


def wait_until_login(settings: Settings, principal: str, timeout_s: float = VISIBLE_TIMEOUT_S) -> None:
    """Until ``principal`` can log in: a new SCRAM credential reaches the broker through the
    metadata log a moment after the controller accepted it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            kafka_clients.admin(settings, principal, request_timeout_ms=5000).close()
            return
        except Exception as exc:  # noqa: BLE001 - any failed login means "not yet"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{principal} cannot log in to Kafka {timeout_s:.0f} s after its "
                                   f"credential was set: {type(exc).__name__}") from None
            time.sleep(0.2)
