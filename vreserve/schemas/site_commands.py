"""The MQTT payloads around a site besides its stock report (docs/ingest.md, "MQTT topics").

* ``vr/v1/sites/{site_id}/status`` (site -> anyone, QoS 1, retained): :class:`SiteStatus`;
* ``vr/v1/sites/{site_id}/commands/pick`` (logistics -> site, QoS 1): :class:`PickCommand`;
* ``vr/v1/sites/{site_id}/picked`` (site -> logistics, QoS 1): :class:`PickAnswer`, what the site
  really handed over (``reason`` when short or refused).

From devices, so fields the contract does not know are kept (the ``keep`` rule).
"""
from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar, Literal

from pydantic.dataclasses import dataclass

from vreserve.schemas.common import Quantity, Record, Text, UtcTime, text


@dataclass(frozen=True)
class SiteStatus(Record):
    """A site's connection state; the broker publishes ``offline`` (its last will) when it vanishes."""

    WHAT: ClassVar[str] = "site status"
    UNKNOWN: ClassVar[str] = "keep"

    site_id: Text
    status: Literal["online", "offline"]
    ts: UtcTime | None = None
    reason: text(1000) | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PickCommand(Record):
    """Hand ``qty`` of ``material`` (in ``unit``) over to the carrier of order ``order_id``."""

    WHAT: ClassVar[str] = "pick command"
    UNKNOWN: ClassVar[str] = "keep"

    order_id: Text
    material: Text
    qty: Quantity
    unit: text(32)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PickAnswer(Record):
    """The site's answer to a pick command: ``picked`` (in ``unit``) is what was really handed over."""

    WHAT: ClassVar[str] = "pick answer"
    UNKNOWN: ClassVar[str] = "keep"

    order_id: Text
    material: Text
    requested: Quantity
    picked: Quantity
    unit: text(32)
    ts: UtcTime
    reason: text(1000) | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
