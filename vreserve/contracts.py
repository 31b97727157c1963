"""Loading contracts, one code path for `vreserve contracts load FILE` and ``POST /api/v1/contracts``.

:func:`parse_items` checks raw items (from a YAML/CSV file or a JSON body) in a stated order and
names every problem with where it is, the field and the reason (a :class:`Problem`);
:func:`load_items` checks them against the registry and the stored contracts and upserts them in
one transaction: all or nothing. A site holds one valid contract per material, so an item that
overlaps another stored contract of the same site and material is refused unless it names it.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import InvalidOperation

import psycopg
import yaml
from psycopg.rows import dict_row

from vreserve.contract_terms import ContractTerms
from vreserve.money import to_decimal

REQUIRED = ("site_id", "material_id", "committed_qty", "valid_from", "valid_to")
OPTIONAL_INT = ("call_off_price_minor_per_unit", "min_response_minutes", "penalty_minor_per_unit",
                "late_penalty_minor_per_unit")
OPTIONAL_DEC = ("standby_fee_minor_per_unit_day", "penalty_grace_share")
FIELDS = ("contract_id",) + REQUIRED + OPTIONAL_DEC + OPTIONAL_INT
#: Largest whole numbers the database columns hold (minutes: integer; money: bigint minor units).
INT_LIMITS = {"min_response_minutes": 2**31 - 1}
MAX_MINOR = 2**63 - 1


@dataclass(frozen=True)
class Problem:
    """One reason a contracts load is refused: ``index`` is the 1-based item (None: the whole load),
    ``field`` the field it is about ("" when it is about the item), ``reason`` for a person."""

    where: str          # 'item' or 'row' (CSV): how the caller counts its items
    index: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where} {self.index}: {self.reason}" if self.index is not None else self.reason


class ContractsRejected(Exception):
    """Nothing was loaded; ``problems`` says every reason (item, field, reason)."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        self.errors = [str(p) for p in problems]
        shown = "\n  ".join(self.errors[:50]) + (f"\n  ... {len(self.errors) - 50} more"
                                                  if len(self.errors) > 50 else "")
        super().__init__(f"{source}: {len(problems)} problem(s), nothing loaded:\n  {shown}")


def _int_field(item: dict, f: str) -> int:
    v = item[f]
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError
    n = int(str(v).strip()) if isinstance(v, str) else int(v)
    if n < 0 or n > INT_LIMITS.get(f, MAX_MINOR):
        raise ValueError
    return n


def _parse_item(item: dict, problem) -> dict:
    """The typed fields of one mapping; every problem goes to ``problem(field, reason)``."""
    vals: dict = {}
    for f in ("site_id", "material_id", "contract_id"):
        if item.get(f) is not None:
            vals[f] = str(item[f]).strip()
    for f in ("valid_from", "valid_to"):
        v = item[f]
        try:
            vals[f] = v if isinstance(v, date) else date.fromisoformat(str(v).strip())
        except ValueError:
            problem(f, f"{f} {v!r} is not a date (YYYY-MM-DD)")
    for f in ("committed_qty",) + OPTIONAL_DEC:
        if f in item:
            try:
                d = to_decimal(item[f])
                if not d.is_finite() or d < 0:
                    raise InvalidOperation
                vals[f] = d
            except (InvalidOperation, ValueError):
                problem(f, f"{f} must be a number >= 0, got {item[f]!r}")
    if "penalty_grace_share" in vals and vals["penalty_grace_share"] >= 1:
        problem("penalty_grace_share", "penalty_grace_share must be below 1 (a share of the order)")
    for f in OPTIONAL_INT:
        if f in item:
            try:
                vals[f] = _int_field(item, f)
            except (ValueError, TypeError):
                problem(f, f"{f} must be a whole number from 0 to {INT_LIMITS.get(f, MAX_MINOR)} "
                           f"(minor units / minutes), got {item[f]!r}")
    if "valid_from" in vals and "valid_to" in vals and vals["valid_to"] < vals["valid_from"]:
        problem("valid_to", f"valid_to {vals['valid_to']} is before valid_from {vals['valid_from']}")
    return vals


def parse_items(items: list, where: str = "item") -> tuple[list[ContractTerms], list[Problem]]:
    """Typed contracts and every problem (empty when all are good); checks in order: shape, unknown
    fields, missing fields, each field's type and range, then the fields together."""
    out: list[ContractTerms] = []
    problems: list[Problem] = []
    for i, item in enumerate(items, 1):
        mine: list[Problem] = []

        def problem(field: str, reason: str, i: int = i, mine: list[Problem] = mine) -> None:
            mine.append(Problem(where, i, field, reason))

        if not isinstance(item, dict):
            problem("", f"want a mapping of fields, got {type(item).__name__}")
        else:
            unknown = sorted(map(str, set(item) - set(FIELDS)))
            if unknown:
                problem(unknown[0], f"unknown field(s) {', '.join(unknown)}")
            missing = [f for f in REQUIRED if item.get(f) in (None, "")]
            if missing:
                problem(missing[0], f"missing {', '.join(missing)}")
            else:
                vals = _parse_item(item, problem)
                if not mine:
                    out.append(ContractTerms(**{"contract_id": None, **vals}))
        problems += mine
    return out, problems


def _registry_problems(conn: psycopg.Connection, contracts: list[ContractTerms], where: str) -> list[Problem]:
    """Unknown sites and materials, and a contract id given twice."""
    sites = {r[0] for r in conn.execute("SELECT site_id FROM sites WHERE site_id = ANY(%s)",
                                        ([c.site_id for c in contracts],))}
    materials = {r[0] for r in conn.execute("SELECT material_id FROM materials")}
    problems = []
    for i, c in enumerate(contracts, 1):
        if c.site_id not in sites:
            problems.append(Problem(where, i, "site_id", f"unknown site {c.site_id!r}"))
        if c.material_id not in materials:
            problems.append(Problem(where, i, "material_id", f"unknown material {c.material_id!r}"))
    ids = [c.contract_id for c in contracts if c.contract_id]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        problems.append(Problem(where, None, "contract_id",
                                f"contract id(s) given twice in the file: {', '.join(dupes)}"))
    return problems


def _contract_id(conn: psycopg.Connection, c: ContractTerms, i: int, where: str) -> tuple[str | None, Problem | None]:
    """The id to store ``c`` under (locking the overlapping rows), or the problem why it cannot be."""
    overlapping = [r[0] for r in conn.execute(
        "SELECT contract_id FROM contracts WHERE site_id = %s AND material_id = %s"
        " AND valid_from <= %s AND valid_to >= %s ORDER BY contract_id FOR UPDATE",
        (c.site_id, c.material_id, c.valid_to, c.valid_from))]
    if c.contract_id is None:
        # No id: replace the one overlapping contract (e.g. the registry's default), or add one.
        if len(overlapping) > 1:
            return None, Problem(where, i, "contract_id", f"{c.site_id}/{c.material_id} overlaps several contracts "
                                                          f"({', '.join(overlapping)}); give contract_id")
        return (overlapping[0] if overlapping else f"C-{c.site_id}-{c.material_id}-{c.valid_from:%Y%m%d}"), None
    others = [o for o in overlapping if o != c.contract_id]
    if others:
        return None, Problem(where, i, "contract_id",
                             f"contract {c.contract_id} overlaps {', '.join(others)} for "
                             f"{c.site_id}/{c.material_id}; a site has one valid contract per material")
    return c.contract_id, None


UPSERT_SQL = (
    "INSERT INTO contracts (contract_id, site_id, material_id, committed_qty, valid_from, valid_to,"
    " standby_fee_minor_per_unit_day, call_off_price_minor_per_unit, min_response_minutes,"
    " penalty_minor_per_unit) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (contract_id) DO UPDATE SET site_id = EXCLUDED.site_id,"
    " material_id = EXCLUDED.material_id, committed_qty = EXCLUDED.committed_qty,"
    " valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to,"
    " standby_fee_minor_per_unit_day = EXCLUDED.standby_fee_minor_per_unit_day,"
    " call_off_price_minor_per_unit = EXCLUDED.call_off_price_minor_per_unit,"
    " min_response_minutes = EXCLUDED.min_response_minutes,"
    " penalty_minor_per_unit = EXCLUDED.penalty_minor_per_unit")
PENALTY_SQL = (
    "INSERT INTO contract_penalty_terms (contract_id, penalty_grace_share, late_penalty_minor_per_unit,"
    " source) VALUES (%s,%s,%s,%s) ON CONFLICT (contract_id) DO UPDATE SET"
    " penalty_grace_share = EXCLUDED.penalty_grace_share,"
    " late_penalty_minor_per_unit = EXCLUDED.late_penalty_minor_per_unit,"
    " source = EXCLUDED.source, updated_at = now()")


class _Rollback(Exception):
    """Leaves the transaction (rolling it back) carrying the refusal."""

    def __init__(self, error: ContractsRejected):
        self.error = error


@dataclass(frozen=True)
class LoadResult:
    inserted: int
    updated: int
    contract_ids: tuple[str, ...]   # in the items' order


def load_items(conn: psycopg.Connection, items: list, source: str, where: str = "item") -> LoadResult:
    """Check ``items`` (raw mappings) and upsert them in one transaction, all or nothing.
    ``source`` says where the terms came from (``file:NAME``, ``api:ACTOR``); it is kept per contract."""
    contracts, problems = parse_items(items, where)
    if not problems and not contracts:
        problems = [Problem(where, None, "", "no contracts given")]
    if not problems:
        problems = _registry_problems(conn, contracts, where)
    if problems:
        raise ContractsRejected(source, problems)
    inserted = updated = 0
    ids: list[str] = []
    try:
        with conn.transaction():
            for i, c in enumerate(contracts, 1):
                cid, problem = _contract_id(conn, c, i, where)
                if problem is not None:
                    problems.append(problem)
                    continue
                exists = conn.execute("SELECT 1 FROM contracts WHERE contract_id = %s", (cid,)).fetchone()
                conn.execute(UPSERT_SQL, (cid, c.site_id, c.material_id, c.committed_qty, c.valid_from, c.valid_to,
                                          c.standby_fee_minor_per_unit_day, c.call_off_price_minor_per_unit,
                                          c.min_response_minutes, c.penalty_minor_per_unit))
                conn.execute(PENALTY_SQL, (cid, c.penalty_grace_share, c.late_penalty_minor_per_unit, source))
                updated, inserted = (updated + 1, inserted) if exists else (updated, inserted + 1)
                ids.append(cid)
            if problems:
                raise _Rollback(ContractsRejected(source, problems))
    except _Rollback as rb:
        raise rb.error from None
    return LoadResult(inserted, updated, tuple(ids))


def list_contracts(conn: psycopg.Connection, site_id: str | None = None, valid_on: date | None = None) -> list[dict]:
    """Every contract with its material's unit and penalty terms (defaults where none were loaded)."""
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
    return conn.cursor(row_factory=dict_row).execute(q + " ORDER BY c.site_id, c.material_id, c.valid_from",
                                                     args).fetchall()


def items_from_text(name: str, text: str) -> tuple[list, str]:
    """Raw items of a contracts file's text and what an item is called in problems ("row" in a CSV,
    "item" otherwise); the type comes from ``name``'s suffix (.csv, .yaml, .yml, .json). Structural
    problems raise ContractsRejected. The CLI (a file on disk) and the API (an upload) both read here."""
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise _file_problem(name, "empty CSV (want a header row)")
        unknown = [f for f in reader.fieldnames if f not in FIELDS]
        if unknown:
            raise _file_problem(name, f"header: unknown column(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader], "row"
    if suffix in ("yaml", "yml", "json"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _file_problem(name, f"not valid YAML: {exc}") from None
        items = doc.get("contracts") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise _file_problem(name, "want a list of contracts (or a mapping with key 'contracts')")
        return items, "item"
    raise _file_problem(name, f"unknown file type {'.' + suffix if suffix else '(none)'!r} "
                              "(want .yaml, .yml, .json or .csv)")


def _file_problem(name: str, reason: str) -> ContractsRejected:
    return ContractsRejected(name, [Problem("file", None, "", reason)])
