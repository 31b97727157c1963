"""Contracts files: read a YAML or CSV file into items for :func:`vreserve.contracts.load_items`
(the checks and the all-or-nothing upsert, shared with the HTTP API), and print the listing.

File format (docs/supervision.md, "Contracts file"): YAML ``{contracts: [ {...}, ... ]}`` (or a bare
list) or CSV with a header row, one contract per row/item with the fields in :data:`FIELDS`. Every
problem in the file is reported (row and field) and nothing is written unless the whole file is good.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import psycopg
import yaml

from supervision.money import fmt_qty
from supervision.report import table
from vreserve.contracts import FIELDS, ContractsRejected, LoadResult, Problem, load_items


def _refuse(path: Path, reason: str) -> ContractsRejected:
    return ContractsRejected(str(path), [Problem("file", None, "", reason)])


def read_items(path: Path) -> list[dict]:
    """Raw items from a YAML or CSV file (by suffix); structural problems raise ContractsRejected."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise _refuse(path, f"cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise _refuse(path, "empty CSV (want a header row)")
        unknown = [f for f in reader.fieldnames if f not in FIELDS]
        if unknown:
            raise _refuse(path, f"header: unknown column(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _refuse(path, f"not valid YAML: {exc}") from None
        items = doc.get("contracts") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise _refuse(path, "want a list of contracts (or a mapping with key 'contracts')")
        return items
    raise _refuse(path, f"unknown file type {path.suffix!r} (want .yaml, .yml, .json or .csv)")


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
