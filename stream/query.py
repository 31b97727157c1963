"""The query side of the stream stage: the virtual warehouse per grid cell and material.

The query itself lives in vreserve/warehouse.py, shared with the HTTP API (stages do not import
each other); this module keeps its old import path for ``vreserve stock`` and other callers."""
from vreserve.warehouse import LATEST_AT, LATEST_NOW, WAREHOUSE, Row, totals_by_material, virtual_warehouse

__all__ = ["LATEST_AT", "LATEST_NOW", "WAREHOUSE", "Row", "totals_by_material", "virtual_warehouse"]
