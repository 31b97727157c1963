"""The query side of the stream stage: the virtual warehouse per grid cell and material.

The query itself lives in vreserve/warehouse.py, shared with the HTTP API (stages do not import
each other); this module keeps its import path for ``vreserve stock`` and other callers."""
from vreserve.warehouse import (
    LATEST_AT,
    LATEST_NOW,
    SITE_HISTORY,
    STOCK_AT_LOOKBACK,
    WAREHOUSE,
    HourlyStock,
    Row,
    site_history,
    totals_by_material,
    virtual_warehouse,
)

__all__ = ["LATEST_AT", "LATEST_NOW", "SITE_HISTORY", "STOCK_AT_LOOKBACK", "WAREHOUSE", "HourlyStock", "Row",
           "site_history", "totals_by_material", "virtual_warehouse"]
