"""Message contracts shared by every stage: plain JSON records, readable by any consumer.

One module per topic family; each record type is a frozen pydantic dataclass on the one codec of
:mod:`vreserve.schemas.common` (``to_json()`` / ``from_json()``), which raises :class:`SchemaError`
naming the field and the reason for anything it cannot accept. ``vreserve schemas export`` publishes
them as JSON Schema and AsyncAPI (:mod:`vreserve.schemas.export`, docs/contracts.md).
"""
from vreserve.schemas.common import SchemaError

__all__ = ["SchemaError"]
