"""Recording an audit: compare counted with reported stock, move trust and status, raise
discrepancy alerts, all in one transaction, exactly once per audit id.

Shared by supervision (CLI, audits topic) and the HTTP API, so it lives in vreserve/ (moved from
supervision/sql_audits.py; the rules are docs/supervision.md's "Audits and trust")."""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

from vreserve.schemas.audits import AuditRecord
from vreserve.money import fmt_qty
from vreserve.trust import TrustChange, TrustPolicy, apply_audit


DISCREPANCY_KIND = "audit_discrepancy"


class AuditRejected(Exception):
    """The audit record is structurally fine but names something the registry does not know."""


@dataclass
class AuditResult:
    audit_id: str
    site_id: str
    duplicate: bool                  # True: this audit_id was recorded before; nothing changed now
    passed: bool
    shortfall_share: float
    trust_before: float
    trust_after: float
    status_before: str
    status_after: str
    alerts: list[dict] = field(default_factory=list)   # discrepancy alerts (to publish)


def alert_id(audit_id: str, material_id: str) -> str:
    return f"{DISCREPANCY_KIND}:{audit_id}:{material_id}"


def record_audit(conn: psycopg.Connection, rec: AuditRecord, source: str,
                 policy: TrustPolicy = TrustPolicy()) -> AuditResult:
    """Apply one audit exactly once (idempotent on audit_id). Raises AuditRejected for unknown names."""
    with conn.transaction():
        site = conn.execute("SELECT trust, status, grid_cell FROM sites WHERE site_id = %s FOR UPDATE",
                            (rec.site_id,)).fetchone()
        if site is None:
            raise AuditRejected(f"unknown site {rec.site_id!r}")
        prior = conn.execute(
            "SELECT site_id, passed, shortfall_share, trust_before, trust_after, status_before, status_after"
            " FROM audits WHERE audit_id = %s", (rec.audit_id,)).fetchone()
        if prior is not None:
            if prior[0] != rec.site_id:
                raise AuditRejected(f"audit id {rec.audit_id!r} was already used for site {prior[0]}")
            alerts = _stored_alerts(conn, rec.audit_id)
            return AuditResult(rec.audit_id, rec.site_id, True, prior[1], prior[2], prior[3], prior[4], prior[5],
                               prior[6], alerts)
        trust, status, grid_cell = float(site[0]), site[1], site[2]
        units = dict(conn.execute("SELECT material_id, unit FROM materials WHERE material_id = ANY(%s)",
                                  ([c.material for c in rec.counts],)).fetchall())
        for c in rec.counts:
            if c.material not in units:
                raise AuditRejected(f"unknown material {c.material!r}")
            if c.unit is not None and c.unit != units[c.material]:
                raise AuditRejected(f"{c.material} is counted in {units[c.material]!r}, not {c.unit!r}")
        reported = dict(conn.execute(
            "SELECT material_id, qty FROM stock_latest WHERE site_id = %s AND material_id = ANY(%s)",
            (rec.site_id, [c.material for c in rec.counts])).fetchall())
        change: TrustChange = apply_audit(
            trust, status, [(c.material, float(reported.get(c.material, 0)), c.counted_qty) for c in rec.counts], policy)
        conn.execute(
            "INSERT INTO audits (audit_id, site_id, auditor, at, source, passed, shortfall_share, trust_before,"
            " trust_after, status_before, status_after, payload) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (rec.audit_id, rec.site_id, rec.auditor, rec.at, source, change.passed, change.shortfall_share,
             change.trust_before, change.trust_after, change.status_before, change.status_after,
             Jsonb(rec.to_payload())))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO audit_counts (audit_id, material_id, reported_qty, counted_qty, unit) VALUES (%s,%s,%s,%s,%s)",
                [(rec.audit_id, ch.material_id, ch.reported_qty, ch.counted_qty, units[ch.material_id])
                 for ch in change.checks])
        alerts = [discrepancy_alert(rec, grid_cell, units[ch.material_id], ch, change)
                  for ch in change.checks if ch.discrepancy]
        for alert in alerts:
            _store_discrepancy(conn, rec, alert)
        if change.passed:
            # A passing audit closes the site's open discrepancy alerts.
            # published_at = NULL: the outbox publishes them again, now with resolved_at.
            conn.execute("UPDATE alerts SET resolved_at = %s, published_at = NULL, resolved_by = %s,"
                         " resolve_note = %s WHERE kind = %s AND site_id = %s AND resolved_at IS NULL",
                         (rec.at, f"audit:{rec.audit_id}", f"passing audit by {rec.auditor}",
                          DISCREPANCY_KIND, rec.site_id))
        # Marked as supervision's write: the 0041 trigger keeps other writers off audited sites' trust.
        conn.execute("SELECT set_config('vreserve.trust_writer', 'supervision', true)")
        conn.execute("UPDATE sites SET trust = %s, status = %s WHERE site_id = %s",
                     (change.trust_after, change.status_after, rec.site_id))
    return AuditResult(rec.audit_id, rec.site_id, False, change.passed, change.shortfall_share, change.trust_before,
                       change.trust_after, change.status_before, change.status_after, alerts)


def discrepancy_alert(rec: AuditRecord, grid_cell: str, unit: str, ch, change: TrustChange) -> dict:
    """The alert an audit's shortfall raises (critical from half the reported stock missing)."""
    share = ch.missing_qty / ch.reported_qty if ch.reported_qty else 1.0
    return {
        "alert_id": alert_id(rec.audit_id, ch.material_id), "kind": DISCREPANCY_KIND,
        "severity": "critical" if share >= 0.5 else "warning",
        "site_id": rec.site_id, "grid_cell": grid_cell, "material_id": ch.material_id,
        "message": (f"numbers without goods: {rec.site_id} reported {fmt_qty(ch.reported_qty, 3)} {unit} of "
                    f"{ch.material_id}, auditor {rec.auditor} counted {fmt_qty(ch.counted_qty, 3)} {unit} "
                    f"({share:.0%} missing); trust {change.trust_before:.2f} -> {change.trust_after:.2f}"
                    + (", site suspended" if change.status_after == "suspended" else "")),
        "at": rec.at,
        "details": {"audit_id": rec.audit_id, "reported_qty": ch.reported_qty, "counted_qty": ch.counted_qty,
                    "unit": unit, "missing_share": round(share, 6), "trust_before": change.trust_before,
                    "trust_after": change.trust_after, "status_after": change.status_after},
    }


def _store_discrepancy(conn: psycopg.Connection, rec: AuditRecord, alert: dict) -> None:
    """The alert (once) and the audit's discrepancy row pointing at it, in the caller's transaction."""
    conn.execute(
        # open_key = the alert id: each audit's finding stands on its own (0080 would
        # otherwise fold a second audit's finding into the first one's open alert).
        "INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details,"
        " open_key) VALUES (%(alert_id)s, %(kind)s, %(severity)s, %(site_id)s, %(grid_cell)s, %(material_id)s,"
        " %(message)s, %(at)s, %(details)s, %(alert_id)s) ON CONFLICT (alert_id) DO NOTHING",
        {**alert, "details": Jsonb(alert["details"])})
    d = alert["details"]
    conn.execute(
        "INSERT INTO audit_discrepancies (discrepancy_id, audit_id, site_id, material_id, reported_qty,"
        " counted_qty, unit, at, alert_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (f"{rec.audit_id}:{alert['material_id']}", rec.audit_id, rec.site_id, alert["material_id"],
         d["reported_qty"], d["counted_qty"], d["unit"], rec.at, alert["alert_id"]))


def _stored_alerts(conn: psycopg.Connection, audit_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT a.alert_id, a.kind, a.severity, a.site_id, a.grid_cell, a.material_id, a.message, a.at, a.details"
        " FROM alerts a JOIN audit_discrepancies d USING (alert_id) WHERE d.audit_id = %s ORDER BY a.alert_id",
        (audit_id,)).fetchall()
    keys = ("alert_id", "kind", "severity", "site_id", "grid_cell", "material_id", "message", "at", "details")
    return [dict(zip(keys, r)) for r in rows]
