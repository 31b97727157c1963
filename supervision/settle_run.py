"""Settle one emergency: compute, compare with what was issued, append a version if it changed.

Also writes the statement as CSV and JSON. Running it again with no new facts issues nothing and
returns the stored statement unchanged; a status record received after the last version produces an
ADJUSTMENT version holding only the change, with the late status ids on it.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import psycopg

from supervision import settlement as st
from supervision import sql_settlement as sql
from supervision.money import fmt_qty
from supervision.report import table


@dataclass
class SettleResult:
    versions: list[st.StatementVersion]      # all versions, the new one (if any) last
    issued: st.StatementVersion | None       # None: nothing changed since the last version
    computation: st.Computation

    @property
    def cumulative(self) -> list[st.Line]:
        return st.cumulative(v.lines for v in self.versions)


def settle(conn: psycopg.Connection, emergency_id: str,
           period_from: date | None = None, period_to: date | None = None,
           progress: Callable[[str], None] = lambda _m: None) -> SettleResult:
    t0 = time.perf_counter()
    facts = sql.load_facts(conn, emergency_id)
    progress(f"read {len(facts.orders)} supply order(s), {sum(len(o.events) for o in facts.orders)} status record(s), "
             f"{len(facts.terms)} contract(s) of {len(facts.standby_sites)} site(s) in "
             f"{time.perf_counter() - t0:.1f} s")
    em = facts.emergency
    dflt = st.default_period(em.declared_at, em.ended_at, em.periods, em.period_length_s)
    stored = sql.load_versions(conn, emergency_id)
    if stored and period_from is None and period_to is None:
        period_from, period_to = stored[0].period_from, stored[0].period_to
    period_from = period_from or dflt[0]
    period_to = period_to or dflt[1]
    if period_to < period_from:
        raise sql.SettlementError(f"settlement period ends ({period_to}) before it starts ({period_from})")
    sql.period_check(stored, period_from, period_to)
    progress(f"{len(stored)} version(s) issued before; computing the statement for {period_from}..{period_to}")
    comp = st.compute(facts.sites, facts.terms, facts.orders, facts.standby_sites, period_from, period_to, facts.units)
    comp.warnings[:0] = facts.warnings
    progress(f"{len(comp.lines)} line(s) computed in {time.perf_counter() - t0:.1f} s")
    now = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    basis = [e.status_id for o in facts.orders for e in o.events]
    version = st.next_version(emergency_id, stored, comp.lines, period_from, period_to, now, basis)
    if version is not None and not sql.store_version(conn, version):
        version = None  # a concurrent run issued it; re-read below
    return SettleResult(sql.load_versions(conn, emergency_id), version, comp)


CSV_FIELDS = ["statement_id", "version", "kind", "line_no", "owner_id", "owner_kind", "site_id", "material_id",
              "unit", "line_kind", "qty", "rate_minor", "amount_minor", "contract_id", "order_ids", "note"]


def write_files(result: SettleResult, out_dir: Path) -> list[Path]:
    """One CSV of every line of every version, one JSON with versions, deliveries and totals."""
    out_dir.mkdir(parents=True, exist_ok=True)
    em = result.versions[0].emergency_id
    csv_path = out_dir / f"settlement-{em}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for v in result.versions:
            for i, l in enumerate(v.lines, 1):
                w.writerow([v.statement_id, v.version, v.kind.upper(), i, l.owner_id, l.owner_kind, l.site_id,
                            l.material_id, l.unit, l.kind, fmt_qty(l.qty), fmt_qty(l.rate_minor), l.amount_minor,
                            l.contract_id or "", " ".join(l.order_ids), l.note])
    per_site, per_owner = st.summarise(result.cumulative)
    doc = {
        "emergency_id": em,
        "money": "integer minor currency units; positive = owed to the owner, negative = deducted",
        "versions": [{**v.header(), "lines": [l.to_dict() for l in v.lines]} for v in result.versions],
        "deliveries_per_owner": [{**r, "ordered_qty": fmt_qty(r["ordered_qty"]), "delivered_qty": fmt_qty(r["delivered_qty"])}
                                 for r in st.deliveries_per_owner(result.computation.deliveries)],
        "deliveries": [{"site_id": d.site_id, "owner_id": d.owner_id, "material_id": d.material_id, "unit": d.unit,
                        "ordered_qty": fmt_qty(d.ordered_qty), "delivered_qty": fmt_qty(d.delivered_qty),
                        "pending_orders": d.pending_orders, "order_ids": list(d.order_ids)}
                       for d in result.computation.deliveries],
        "per_site": per_site,
        "per_owner": per_owner,
        "total_minor": sum(r["total_minor"] for r in per_owner),
        "warnings": result.computation.warnings,
    }
    json_path = out_dir / f"settlement-{em}.json"
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return [csv_path, json_path]


def render(result: SettleResult, max_rows: int = 40) -> str:
    parts = []
    for v in result.versions:
        mark = "ADJUSTMENT " if v.kind == "adjustment" else ""
        parts.append(f"{mark}{v.statement_id}  period {v.period_from}..{v.period_to}  issued {v.issued_at:%Y-%m-%d %H:%M:%S %Z}"
                     f"  {len(v.lines)} line(s)  total {v.total_minor} minor units"
                     + (f"  late status: {', '.join(v.late_status_ids[:5])}" if v.late_status_ids else ""))
    per_site, per_owner = st.summarise(result.cumulative)
    money = ["call_off_minor", "standby_fee_minor", "shortfall_penalty_minor", "late_penalty_minor", "total_minor"]
    heads = ["call-off (minor)", "standby (minor)", "shortfall pen. (minor)", "late pen. (minor)", "total (minor)"]
    parts.append("\nPer owner (all versions together)")
    orows = [[r["owner_id"], r["owner_kind"]] + [r[k] for k in money] for r in per_owner]
    parts.append(table(["owner", "kind"] + heads, orows[:max_rows]))
    if len(orows) > max_rows:
        parts.append(f"... {len(orows) - max_rows} more owner(s) in the CSV/JSON")
    parts.append("\nPer site")
    rows = [[r["site_id"], r["owner_id"]] + [r[k] for k in money] for r in per_site]
    parts.append(table(["site", "owner"] + heads, rows[:max_rows]))
    if len(rows) > max_rows:
        parts.append(f"... {len(rows) - max_rows} more site(s) in the CSV/JSON")
    dl = result.computation.deliveries
    per_owner_dl = st.deliveries_per_owner(dl)
    if per_owner_dl:
        parts.append("\nUnits ordered and delivered per owner (supply leg)")
        parts.append(table(["owner", "material", "ordered", "delivered", "unit", "sites"],
                           [[r["owner_id"], r["material_id"], fmt_qty(r["ordered_qty"]), fmt_qty(r["delivered_qty"]),
                             r["unit"], r["sites"]] for r in per_owner_dl[:max_rows]]))
        if len(per_owner_dl) > max_rows:
            parts.append(f"... {len(per_owner_dl) - max_rows} more row(s) in the JSON")
    if dl:
        parts.append("\nUnits ordered and delivered per site (supply leg)")
        parts.append(table(["site", "material", "ordered", "delivered", "unit", "pending orders"],
                           [[d.site_id, d.material_id, fmt_qty(d.ordered_qty), fmt_qty(d.delivered_qty), d.unit,
                             d.pending_orders] for d in dl[:max_rows]]))
        if len(dl) > max_rows:
            parts.append(f"... {len(dl) - max_rows} more row(s) in the JSON")
    parts.append(f"\nTotal owed to owners: {sum(r['total_minor'] for r in per_owner)} minor currency units")
    for w in result.computation.warnings[:20]:
        parts.append(f"warning: {w}")
    if len(result.computation.warnings) > 20:
        parts.append(f"... {len(result.computation.warnings) - 20} more warning(s) in the JSON")
    return "\n".join(parts)
