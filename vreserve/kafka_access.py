"""Who may do what on Kafka: one SCRAM principal per component and the ACLs each one needs.

The rules are data, like the MQTT broker's (``vreserve/mqtt_access.py``), turned into concrete ACL
bindings for one topic prefix by :func:`grants` (pure, no I/O). Kafka's ``StandardAuthorizer``
denies whatever no ACL allows, so each principal gets exactly the topics and consumer groups in
its rule and nothing else:

* only the operations principal (the API service, and the operator CLI acting through the same
  ``vreserve/operations.py`` code) may write the mode topic;
* only the dispatcher may write dispatch orders;
* a carrier may read dispatch orders and write order status, nothing else.

The admin principal is a super user of the broker (it creates topics, principals and ACLs); no
running stage uses it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from vreserve import topics

#: Super user: the runner, `vreserve topics`, provisioning, the test harness. Not used by stages.
ADMIN = "vr-admin"
#: The ingest bridge: MQTT readings into Kafka.
BRIDGE = "vr-bridge"
#: The Faust stream worker.
STREAM = "vr-stream"
#: The dispatcher service.
DISPATCHER = "vr-dispatcher"
#: The API service and the operator CLI's actions (declare/end, demand, order status, alerts).
OPERATIONS = "vr-api"
#: Supervision's audit consumer and audit tools.
SUPERVISION = "vr-supervision"
#: The simulated logistics company (a carrier with its own dead-letter topic).
LOGISTICS = "vr-logistics"
#: Prefix of one principal per carrier that consumes the dispatch-orders topic itself.
CARRIER_PREFIX = "vr-carrier-"

_CARRIER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Rule:
    """What one principal may do, by logical topic name; groups are ``<prefix><group>`` prefixes."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    #: Topics it may create if missing (Faust declares the topics it uses at start).
    create: tuple[str, ...] = ()
    #: Consumer-group name prefixes (after the topic prefix) it may join and commit in.
    groups: tuple[str, ...] = ()
    #: Topic-name prefixes (after the topic prefix) it owns entirely: e.g. Faust's changelogs.
    owns: tuple[str, ...] = field(default=())


CARRIER_RULE = Rule(read=(topics.DISPATCH_ORDERS,), write=(topics.ORDER_STATUS,))

RULES: dict[str, Rule] = {
    BRIDGE: Rule(write=(topics.READINGS, topics.READINGS_DEAD_LETTER)),
    STREAM: Rule(read=(topics.READINGS,), write=(topics.ALERTS, topics.STREAM_DEAD_LETTER),
                 create=(topics.READINGS, topics.ALERTS, topics.STREAM_DEAD_LETTER),
                 groups=("stream",), owns=("stream-",)),
    DISPATCHER: Rule(read=(topics.MODE, topics.DEMAND, topics.ORDER_STATUS),
                     write=(topics.DISPATCH_ORDERS, topics.PLANS, topics.MODE_ERRORS, topics.ORDER_STATUS_ERRORS),
                     groups=("dispatcher",)),
    OPERATIONS: Rule(read=(topics.DISPATCH_ORDERS, topics.READINGS_DEAD_LETTER),
                     write=(topics.MODE, topics.DEMAND, topics.ORDER_STATUS, topics.ALERTS),
                     groups=("webhooks",)),
    SUPERVISION: Rule(read=(topics.AUDITS,), write=(topics.AUDITS, topics.ALERTS), groups=("supervision",)),
    LOGISTICS: Rule(read=(topics.DISPATCH_ORDERS,), write=(topics.ORDER_STATUS, topics.LOGISTICS_DEAD_LETTER),
                    groups=("logistics",)),
}

#: Every component principal the runner provisions (carriers are added one by one).
COMPONENTS = tuple(RULES)


class AccessError(ValueError):
    """A principal or carrier id that cannot be provisioned."""


def carrier_principal(carrier_id: str) -> str:
    """The Kafka principal of a carrier that consumes dispatch orders itself."""
    if not _CARRIER_ID.fullmatch(carrier_id or ""):
        raise AccessError(f"carrier id {carrier_id!r}: letters, digits, '_', '.', '-' only (at most 64)")
    return CARRIER_PREFIX + carrier_id


def rule_for(principal: str) -> Rule:
    """The rule of a component or carrier principal; AccessError for anything else."""
    if principal in RULES:
        return RULES[principal]
    if principal.startswith(CARRIER_PREFIX) and _CARRIER_ID.fullmatch(principal[len(CARRIER_PREFIX):]):
        return Rule(read=CARRIER_RULE.read, write=CARRIER_RULE.write, groups=(principal[len("vr-"):],))
    raise AccessError(f"no Kafka rule for principal {principal!r}")


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW binding: ``principal`` may ``operation`` on a topic/group name (literal or prefix)."""

    principal: str
    resource: str   # "topic" | "group"
    name: str
    pattern: str    # "literal" | "prefixed"
    operation: str  # "READ" | "WRITE" | "CREATE" | "DESCRIBE" | "ALL"


def grants(principal: str, topic_prefix: str) -> list[Grant]:
    """The ACL bindings ``principal`` needs for the topics under ``topic_prefix``."""
    rule = rule_for(principal)
    out: set[Grant] = set()
    for name in rule.read:
        out |= {Grant(principal, "topic", topic_prefix + name, "literal", op) for op in ("READ", "DESCRIBE")}
    for name in rule.write:
        out |= {Grant(principal, "topic", topic_prefix + name, "literal", op) for op in ("WRITE", "DESCRIBE")}
    for name in rule.create:
        out.add(Grant(principal, "topic", topic_prefix + name, "literal", "CREATE"))
    for name in rule.owns:
        out.add(Grant(principal, "topic", topic_prefix + name, "prefixed", "ALL"))
    for name in rule.groups:
        out.add(Grant(principal, "group", topic_prefix + name, "prefixed", "READ"))
    return sorted(out)
