"""Message schemas shared by every stage: plain JSON records, readable by any consumer.

One module per topic family. Each record type has ``to_json()`` / ``from_json()`` and raises
:class:`SchemaError` with a human reason on anything it cannot accept.
"""
from vreserve.schemas.common import SchemaError

__all__ = ["SchemaError"]
