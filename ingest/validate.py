"""Strict validation of one MQTT stock message: pure, no I/O, so every rule is unit-testable.

Order of checks (the first failure is the dead-letter reason): topic shape, delivery (QoS 1 or 2,
not a retained replay), size, JSON/schema
(``StockReport.from_json``: types, finite non-negative quantities, unique materials), topic site ==
payload site, known site, known material with the catalogue's unit, sane timestamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vreserve.schemas import SchemaError
from vreserve.schemas.readings import MAX_PAYLOAD_BYTES, StockReport

#: A reading stamped further in the future than this is rejected (sensor clock wrong).
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: A reading older than this is rejected: a persistent session may hold hours of backlog after an
#: outage, which is still valid stock history, but a month-old reading is a broken clock.
MAX_AGE = timedelta(days=30)

_TOPIC_HEAD = "vr/v1/sites/"
_TOPIC_TAIL = "/stock"


@dataclass(frozen=True)
class KnownRegistry:
    """What the bridge checks against, loaded from the database (an immutable snapshot)."""

    sites: frozenset[str] = frozenset()
    material_units: dict[str, str] = field(default_factory=dict)


class Rejected(Exception):
    """A message that goes to the dead-letter topic; ``reason`` is what a person reads there."""

    def __init__(self, reason: str, kind: str, site_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # short machine-readable category: schema, topic, unknown_site, ...
        self.site_id = site_id


def site_from_topic(topic: str) -> str | None:
    if topic.startswith(_TOPIC_HEAD) and topic.endswith(_TOPIC_TAIL):
        site = topic[len(_TOPIC_HEAD):-len(_TOPIC_TAIL)]
        if site and "/" not in site:
            return site
    return None


def validate_message(topic: str, payload: bytes, known: KnownRegistry, now: datetime, qos: int = 1,
                     retained: bool = False) -> StockReport:
    """Return the accepted report or raise :class:`Rejected` with the reason.

    ``qos`` is the QoS the message reached the bridge with (the bridge subscribes at 1: a report
    published at 2 arrives at 1 and is accepted; one published at 0 arrives at 0 and is refused,
    since a site that does not ask for acknowledgements loses reports silently). ``retained`` is
    the retain flag the broker set: a retained report replayed to a new subscription is stale by
    design (it would re-deliver an old stock figure to every new bridge) and is refused.
    """
    topic_site = site_from_topic(topic)
    if topic_site is None:
        raise Rejected(f"topic {topic[:200]!r} is not vr/v1/sites/<site_id>/stock", "topic")
    if qos == 0:
        raise Rejected("published at QoS 0: stock reports must be published at QoS 1 (QoS 2 is accepted "
                       "and delivered at 1); at QoS 0 a lost report goes unnoticed", "qos", topic_site)
    if retained:
        raise Rejected("retained stock report (replayed by the broker to a new subscription): publish stock "
                       "with retain=false, and clear this one with an empty retained message on the same "
                       "topic (an empty message is acknowledged and ignored)", "retained", topic_site)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit", "size", topic_site)
    try:
        report = StockReport.from_json(payload)
    except SchemaError as exc:
        raise Rejected(f"schema: {exc}", "schema", topic_site) from None
    if report.site_id != topic_site:
        raise Rejected(
            f"payload site_id {report.site_id!r} differs from the topic's site {topic_site!r}", "site_mismatch", topic_site
        )
    if topic_site not in known.sites:
        raise Rejected(f"unknown site {topic_site!r} (not in the registry)", "unknown_site", topic_site)
    for r in report.readings:
        unit = known.material_units.get(r.material)
        if unit is None:
            raise Rejected(f"unknown material {r.material!r} (not in the catalogue)", "unknown_material", topic_site)
        if r.unit != unit:
            raise Rejected(
                f"material {r.material!r} reported in {r.unit!r}, the catalogue counts it in {unit!r}", "unit", topic_site
            )
    if report.ts > now + MAX_CLOCK_SKEW:
        raise Rejected(f"timestamp {report.ts.isoformat()} is more than {MAX_CLOCK_SKEW} in the future", "timestamp", topic_site)
    if report.ts < now - MAX_AGE:
        raise Rejected(f"timestamp {report.ts.isoformat()} is older than {MAX_AGE.days} days", "timestamp", topic_site)
    return report
