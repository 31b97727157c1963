"""SQL adapter for assessment: per-site facts of one emergency (orders, readings, audits); read by
`vreserve assess` and the HTTP API's `GET /assessments`."""
from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from vreserve.assessment import SiteFacts
from vreserve.sql_supply import load_facts
from vreserve.supply import contract_for, index_terms, order_outcome, utc_day


def load_site_facts(conn: psycopg.Connection, emergency_id: str, reading_interval_s: float,
                    now: datetime | None = None) -> tuple[list[SiteFacts], dict]:
    """Facts of every site with supply orders in the emergency, plus the window used for readings."""
    facts = load_facts(conn, emergency_id)
    em = facts.emergency
    now = now or conn.execute("SELECT clock_timestamp()").fetchone()[0]
    planned_end = em.declared_at + timedelta(seconds=em.periods * em.period_length_s)
    hi = min(em.ended_at or planned_end, now)
    lo = em.declared_at
    out: dict[str, SiteFacts] = {}
    by_pair = index_terms(facts.terms)
    for order in facts.orders:
        site = facts.sites[order.site_id]
        f = out.setdefault(order.site_id, SiteFacts(site.site_id, site.owner_id, site.owner_kind))
        o = order_outcome(order)
        if not o.final and o.delivered_qty == 0 and o.status in ("cancelled", "closed"):
            continue  # the dispatcher withdrew it before anything happened
        f.orders += 1
        acc = f.materials.setdefault(order.material_id, [0.0, 0.0])
        acc[0] += float(order.qty)
        acc[1] += float(o.delivered_qty)
        if o.delivered_at is not None:
            f.delivered_orders += 1
            f.response_minutes.append(o.response_minutes)
            t = contract_for(by_pair.get((order.site_id, order.material_id), ()), order.site_id, order.material_id, utc_day(order.created_at))
            limit = t.min_response_minutes if t else 0
            if limit <= 0 or (o.pick_minutes is not None and o.pick_minutes <= limit):
                f.on_time += 1
    site_ids = sorted(out)
    window_s = max(0.0, (hi - lo).total_seconds())
    has_history = conn.execute("SELECT to_regclass('stock_readings') IS NOT NULL").fetchone()[0]
    if has_history and window_s >= reading_interval_s:
        rows = conn.execute(
            "SELECT site_id, count(DISTINCT ts) FILTER (WHERE received_at - ts <= make_interval(secs => %s))"
            " FROM stock_readings WHERE site_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY site_id",
            (reading_interval_s, site_ids, lo, hi)).fetchall()
        on_time = dict(rows)
        for sid in site_ids:
            out[sid].readings_on_time = int(on_time.get(sid, 0))
            out[sid].readings_expected = window_s / reading_interval_s
    for sid, n, failed in conn.execute(
        "SELECT site_id, count(*), count(*) FILTER (WHERE NOT passed) FROM audits"
        " WHERE site_id = ANY(%s) AND at <= %s GROUP BY site_id", (site_ids, hi)).fetchall():
        out[sid].audits, out[sid].failed_audits = int(n), int(failed)
    window = {"from": lo, "to": hi, "seconds": window_s, "readings_history": bool(has_history),
              "reading_interval_s": reading_interval_s}
    return [out[s] for s in site_ids], window
