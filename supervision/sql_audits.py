"""SQL adapter for audits: record an audit (trust, status, discrepancies, alerts in one transaction),
the alerts outbox and rejected topic records (the audit plan's risk facts: vreserve/sql_audit_plan.py)."""
from __future__ import annotations

import psycopg

from vreserve.audits import (  # noqa: F401 - recording an audit is shared with the HTTP API
    DISCREPANCY_KIND,
    AuditRejected,
    AuditResult,
    alert_id,
    record_audit,
)
from vreserve.schemas.alerts import Alert
from vreserve.sql_audit_plan import site_risks  # noqa: F401 - shared with the HTTP API's audit plans


def alert_json(alert: dict) -> bytes:
    """The alert as the alerts topic's record (vreserve.schemas.alerts.Alert, same fields as the table)."""

    return Alert(alert_id=alert["alert_id"], kind=alert["kind"], severity=alert["severity"],
                 message=alert["message"], at=alert["at"], site_id=alert.get("site_id"),
                 grid_cell=alert.get("grid_cell"), material_id=alert.get("material_id"),
                 details=dict(alert.get("details") or {}), resolved_at=alert.get("resolved_at")).to_json()


_ALERT_COLS = ("alert_id", "kind", "severity", "site_id", "grid_cell", "material_id", "message", "at", "details",
               "resolved_at")


def pending_alerts(conn: psycopg.Connection, limit: int = 500) -> list[dict]:
    """Supervision's outbox: discrepancy alerts not yet on the alerts topic (new, or resolved since).

    The stream worker's outbox publishes only its own kinds; these are ours to publish.
    """
    rows = conn.execute(
        f"SELECT {', '.join(_ALERT_COLS)} FROM alerts WHERE published_at IS NULL AND kind = %s"
        " ORDER BY at, alert_id LIMIT %s", (DISCREPANCY_KIND, limit)).fetchall()
    return [dict(zip(_ALERT_COLS, r)) for r in rows]


def mark_published(conn: psycopg.Connection, alert_ids: list[str]) -> None:
    if alert_ids:
        conn.execute("UPDATE alerts SET published_at = now() WHERE alert_id = ANY(%s)", (alert_ids,))


def store_rejection(conn: psycopg.Connection, rejection_id: str, source: str, key: str | None, raw: bytes,
                    reason: str) -> None:
    conn.execute("INSERT INTO audit_rejections (rejection_id, source, key, raw, reason) VALUES (%s,%s,%s,%s,%s)"
                 " ON CONFLICT DO NOTHING", (rejection_id, source, key, raw, reason))
