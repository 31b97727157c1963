"""Contracts files: read a YAML or CSV file into items for :func:`vreserve.contracts.load_items`
(the checks and the all-or-nothing upsert, shared with the HTTP API), and print the listing.

File format (docs/supervision.md, "Contracts file"): YAML ``{contracts: [ {...}, ... ]}`` (or a bare
list) or CSV with a header row, one contract per row/item with the fields in :data:`FIELDS`. Every
problem in the file is reported (row and field) and nothing is written unless the whole file is good.
"""
from __future__ import annotations

from pathlib import Path

import psycopg

from vreserve.money import fmt_qty
from vreserve.tables import table
from vreserve.contracts import ContractsRejected, LoadResult, Problem, items_from_text, load_items


def read_items(path: Path) -> list[dict]:
    """Raw items from a YAML or CSV file (by suffix); structural problems raise ContractsRejected."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ContractsRejected(str(path), [Problem("file", None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        return items_from_text(path.name, text)[0]
    except ContractsRejected as exc:
        raise ContractsRejected(str(path), exc.problems) from None


def load(conn: psycopg.Connection, path: Path) -> LoadResult:
    """Load or update every contract of the file at ``path``, all or nothing."""
    items = read_items(path)
    return load_items(conn, items, f"file:{path.name}", "row" if path.suffix.lower() == ".csv" else "item")


def render(rows: list[dict]) -> str:
    return table(
        ["contract", "site", "material", "committed", "unit", "valid from", "valid to", "standby (minor/unit/day)",
         "call-off (minor/unit)", "response (min)", "penalty (minor/unit)", "grace (share)", "late pen. (minor/unit)"],
        [[r["contract_id"], r["site_id"], r["material_id"], fmt_qty(r["committed_qty"]), r["unit"], r["valid_from"],
          r["valid_to"], fmt_qty(r["standby_fee_minor_per_unit_day"]), r["call_off_price_minor_per_unit"],
          r["min_response_minutes"], r["penalty_minor_per_unit"], fmt_qty(r["penalty_grace_share"]),
          r["late_penalty_minor_per_unit"]] for r in rows])
