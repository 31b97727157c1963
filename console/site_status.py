"""Who suspended or reinstated a site, when and why: read from the API's audit trail, where every
suspend / reinstate request is recorded with its reason (the ``sites`` table keeps only the
current status). Audits that suspend a site are in the ``audits`` table and shown beside these.
"""
from __future__ import annotations

import json
from typing import Any

#: The API's suspend / reinstate routes as the audit trail names them ("POST /api/v1/sites/S1/suspend").
STATUS_ACTION = r"^POST /api/v1/sites/.+/(suspend|reinstate)$"


def read_status_changes(conn: Any, site_id: str, limit: int = 20) -> list[dict]:
    """Accepted suspend / reinstate requests of one site, newest first."""
    rows = conn.execute(
        "SELECT at, actor, action, detail FROM audit_log WHERE target = %s AND outcome = 'ok' AND action ~ %s"
        " ORDER BY seq DESC LIMIT %s", (site_id, STATUS_ACTION, limit)).fetchall()
    return [status_change(at, actor, action, detail) for at, actor, action, detail in rows]


def status_change(at: Any, actor: str, action: str, detail: Any) -> dict:
    """One audit-trail row as a status change: the status it set, who, when and the reason given."""
    info = json.loads(detail) if isinstance(detail, str) else dict(detail or {})
    status = "suspended" if action.endswith("/suspend") else "active"
    return {"at": at.isoformat() if hasattr(at, "isoformat") else at, "actor": actor, "status": status,
            "reason": info.get("reason")}
