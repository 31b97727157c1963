"""SQL adapter for assessment: moved to vreserve/sql_assessment.py (shared with the HTTP API); this
keeps the old import path."""
from vreserve.sql_assessment import load_site_facts

__all__ = ["load_site_facts"]
