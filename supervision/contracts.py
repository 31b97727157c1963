"""Contracts: parse a contracts file (YAML or CSV), check it against the registry, upsert, list.

File format (docs/supervision.md, "Contracts file"): YAML ``{contracts: [ {...}, ... ]}`` (or a bare
list) or CSV with a header row, one contract per row/item with the fields in :data:`FIELDS`. Every
problem in the file is reported (row and field) and nothing is written unless the whole file is good.
"""
from __future__ import annotations

import csv
import io
from datetime import date
from decimal import InvalidOperation
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from supervision.money import fmt_qty, to_decimal
from supervision.report import table
from vreserve.contract_terms import ContractTerms

REQUIRED = ("site_id", "material_id", "committed_qty", "valid_from", "valid_to")
OPTIONAL_INT = ("call_off_price_minor_per_unit", "min_response_minutes", "penalty_minor_per_unit",
                "late_penalty_minor_per_unit")
OPTIONAL_DEC = ("standby_fee_minor_per_unit_day", "penalty_grace_share")
FIELDS = ("contract_id",) + REQUIRED + OPTIONAL_DEC + OPTIONAL_INT


class ContractFileError(Exception):
    """The file cannot be loaded; ``errors`` lists every problem as 'where: what'."""

    def __init__(self, path: str, errors: list[str]):
        self.errors = errors
        shown = "\n  ".join(errors[:50]) + (f"\n  ... {len(errors) - 50} more" if len(errors) > 50 else "")
        super().__init__(f"{path}: {len(errors)} problem(s), nothing loaded:\n  {shown}")


#: A contract as the contracts file states it (one type for every module: :mod:`vreserve.contract_terms`).
Contract = ContractTerms


def read_items(path: Path) -> list[dict]:
    """Raw items from a YAML or CSV file (by suffix); structural problems raise ContractFileError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ContractFileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ContractFileError(str(path), ["empty CSV (want a header row)"])
        unknown = [f for f in reader.fieldnames if f not in FIELDS]
        if unknown:
            raise ContractFileError(str(path), [f"header: unknown column(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"])
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ContractFileError(str(path), [f"not valid YAML: {exc}"]) from None
        items = doc.get("contracts") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ContractFileError(str(path), ["want a list of contracts (or a mapping with key 'contracts')"])
        return items
    raise ContractFileError(str(path), [f"unknown file type {path.suffix!r} (want .yaml, .yml, .json or .csv)"])


def parse_items(items: list, where: str = "item") -> tuple[list[Contract], list[str]]:
    """Typed contracts and the list of problems (empty when all are good)."""
    out: list[Contract] = []
    errors: list[str] = []
    for i, item in enumerate(items, 1):
        loc = f"{where} {i}"
        if not isinstance(item, dict):
            errors.append(f"{loc}: want a mapping of fields, got {type(item).__name__}")
            continue
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            errors.append(f"{loc}: unknown field(s) {', '.join(map(str, unknown))}")
        missing = [f for f in REQUIRED if item.get(f) in (None, "")]
        if missing:
            errors.append(f"{loc}: missing {', '.join(missing)}")
            continue
        vals: dict = {}
        for f in ("site_id", "material_id", "contract_id"):
            if item.get(f) is not None:
                vals[f] = str(item[f]).strip()
        for f in ("valid_from", "valid_to"):
            v = item[f]
            if isinstance(v, date):
                vals[f] = v
            else:
                try:
                    vals[f] = date.fromisoformat(str(v).strip())
                except ValueError:
                    errors.append(f"{loc}: {f} {v!r} is not a date (YYYY-MM-DD)")
        for f in ("committed_qty",) + OPTIONAL_DEC:
            if f in item:
                try:
                    d = to_decimal(item[f])
                    if not d.is_finite() or d < 0:
                        raise InvalidOperation
                    vals[f] = d
                except (InvalidOperation, ValueError):
                    errors.append(f"{loc}: {f} must be a number >= 0, got {item[f]!r}")
        if "penalty_grace_share" in vals and vals["penalty_grace_share"] >= 1:
            errors.append(f"{loc}: penalty_grace_share must be below 1 (a share of the order)")
        for f in OPTIONAL_INT:
            if f in item:
                v = item[f]
                try:
                    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                        raise ValueError
                    n = int(str(v).strip()) if isinstance(v, str) else int(v)
                    if n < 0:
                        raise ValueError
                    vals[f] = n
                except (ValueError, TypeError):
                    errors.append(f"{loc}: {f} must be a whole number >= 0 (minor units / minutes), got {v!r}")
        if "valid_from" in vals and "valid_to" in vals and vals["valid_to"] < vals["valid_from"]:
            errors.append(f"{loc}: valid_to {vals['valid_to']} is before valid_from {vals['valid_from']}")
        if len(errors) == 0 or not any(e.startswith(loc + ":") for e in errors):
            vals.setdefault("contract_id", None)
            out.append(Contract(**vals))
    return out, errors


def load_file(conn: psycopg.Connection, path: Path) -> tuple[int, int]:
    """Validate the whole file against the registry, then upsert in one transaction. (inserted, updated)."""
    items = read_items(path)
    where = "row" if path.suffix.lower() == ".csv" else "item"
    contracts, errors = parse_items(items, where)
    if errors:
        raise ContractFileError(str(path), errors)
    if not contracts:
        raise ContractFileError(str(path), ["no contracts in the file"])
    sites = {r[0] for r in conn.execute("SELECT site_id FROM sites WHERE site_id = ANY(%s)",
                                        ([c.site_id for c in contracts],))}
    materials = {r[0] for r in conn.execute("SELECT material_id FROM materials")}
    for i, c in enumerate(contracts, 1):
        if c.site_id not in sites:
            errors.append(f"{where} {i}: unknown site {c.site_id!r}")
        if c.material_id not in materials:
            errors.append(f"{where} {i}: unknown material {c.material_id!r}")
    ids = [c.contract_id for c in contracts if c.contract_id]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        errors.append(f"contract id(s) given twice in the file: {', '.join(dupes)}")
    if errors:
        raise ContractFileError(str(path), errors)
    inserted = updated = 0
    with conn.transaction():
        for i, c in enumerate(contracts, 1):
            cid = c.contract_id
            overlapping = [r[0] for r in conn.execute(
                "SELECT contract_id FROM contracts WHERE site_id = %s AND material_id = %s"
                " AND valid_from <= %s AND valid_to >= %s ORDER BY contract_id FOR UPDATE",
                (c.site_id, c.material_id, c.valid_to, c.valid_from))]
            if cid is None:
                # No id: replace the one overlapping contract (e.g. the registry's default), or add one.
                if len(overlapping) > 1:
                    errors.append(f"{where} {i}: {c.site_id}/{c.material_id} overlaps several contracts "
                                  f"({', '.join(overlapping)}); give contract_id")
                    continue
                cid = overlapping[0] if overlapping else f"C-{c.site_id}-{c.material_id}-{c.valid_from:%Y%m%d}"
            else:
                others = [o for o in overlapping if o != cid]
                if others:
                    errors.append(f"{where} {i}: contract {cid} overlaps {', '.join(others)} for "
                                  f"{c.site_id}/{c.material_id}; a site has one valid contract per material")
                    continue
            exists = conn.execute("SELECT 1 FROM contracts WHERE contract_id = %s", (cid,)).fetchone()
            conn.execute(
                "INSERT INTO contracts (contract_id, site_id, material_id, committed_qty, valid_from, valid_to,"
                " standby_fee_minor_per_unit_day, call_off_price_minor_per_unit, min_response_minutes,"
                " penalty_minor_per_unit) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (contract_id) DO UPDATE SET site_id = EXCLUDED.site_id,"
                " material_id = EXCLUDED.material_id, committed_qty = EXCLUDED.committed_qty,"
                " valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to,"
                " standby_fee_minor_per_unit_day = EXCLUDED.standby_fee_minor_per_unit_day,"
                " call_off_price_minor_per_unit = EXCLUDED.call_off_price_minor_per_unit,"
                " min_response_minutes = EXCLUDED.min_response_minutes,"
                " penalty_minor_per_unit = EXCLUDED.penalty_minor_per_unit",
                (cid, c.site_id, c.material_id, c.committed_qty, c.valid_from, c.valid_to,
                 c.standby_fee_minor_per_unit_day, c.call_off_price_minor_per_unit, c.min_response_minutes,
                 c.penalty_minor_per_unit))
            conn.execute(
                "INSERT INTO contract_penalty_terms (contract_id, penalty_grace_share, late_penalty_minor_per_unit,"
                " source) VALUES (%s,%s,%s,%s) ON CONFLICT (contract_id) DO UPDATE SET"
                " penalty_grace_share = EXCLUDED.penalty_grace_share,"
                " late_penalty_minor_per_unit = EXCLUDED.late_penalty_minor_per_unit,"
                " source = EXCLUDED.source, updated_at = now()",
                (cid, c.penalty_grace_share, c.late_penalty_minor_per_unit, f"file:{path.name}"))
            if exists:
                updated += 1
            else:
                inserted += 1
        if errors:
            raise _Rollback(ContractFileError(str(path), errors))
    return inserted, updated


class _Rollback(Exception):
    def __init__(self, error: ContractFileError):
        self.error = error


def load(conn: psycopg.Connection, path: Path) -> tuple[int, int]:
    try:
        return load_file(conn, path)
    except _Rollback as rb:
        raise rb.error from None


def list_contracts(conn: psycopg.Connection, site_id: str | None = None, valid_on: date | None = None) -> list[dict]:
    q = ("SELECT c.*, m.unit, COALESCE(p.penalty_grace_share, 0) AS penalty_grace_share,"
         " COALESCE(p.late_penalty_minor_per_unit, 0) AS late_penalty_minor_per_unit,"
         " COALESCE(p.source, 'registry') AS source"
         " FROM contracts c JOIN materials m USING (material_id)"
         " LEFT JOIN contract_penalty_terms p USING (contract_id) WHERE true")
    args: list = []
    if site_id:
        q += " AND c.site_id = %s"
        args.append(site_id)
    if valid_on:
        q += " AND c.valid_from <= %s AND c.valid_to >= %s"
        args += [valid_on, valid_on]
    return conn.cursor(row_factory=dict_row).execute(q + " ORDER BY c.site_id, c.material_id, c.valid_from", args).fetchall()


def render(rows: list[dict]) -> str:
    return table(
        ["contract", "site", "material", "committed", "unit", "valid from", "valid to", "standby (minor/unit/day)",
         "call-off (minor/unit)", "response (min)", "penalty (minor/unit)", "grace (share)", "late pen. (minor/unit)"],
        [[r["contract_id"], r["site_id"], r["material_id"], fmt_qty(r["committed_qty"]), r["unit"], r["valid_from"],
          r["valid_to"], fmt_qty(r["standby_fee_minor_per_unit_day"]), r["call_off_price_minor_per_unit"],
          r["min_response_minutes"], r["penalty_minor_per_unit"], fmt_qty(r["penalty_grace_share"]),
          r["late_penalty_minor_per_unit"]] for r in rows])
