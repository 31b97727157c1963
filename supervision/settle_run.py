"""`vreserve settle`'s output: the statement as CSV and JSON files and as tables.

The run itself (compute, compare with what was issued, append a version if it changed) is
:func:`vreserve.sql_settlement.settle`, shared with the HTTP API.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from vreserve.money import fmt_qty
from vreserve.tables import table
from vreserve import settlement as st
from vreserve.settlement import SettleResult

CSV_FIELDS = ["statement_id", "version", "kind", "line_no", "owner_id", "owner_kind", "site_id", "material_id",
              "unit", "line_kind", "qty", "rate_minor", "amount_minor", "contract_id", "order_ids", "note"]


def write_files(result: SettleResult, out_dir: Path, currency: str) -> list[Path]:
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
    doc = st.document(result, currency)
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
