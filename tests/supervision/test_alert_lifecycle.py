"""Alert lifecycle (issue 16): open -> acknowledged -> resolved, never duplicated while open, every
action with its actor, automatic resolution recorded as the system's, and the `vreserve alerts` CLI."""
from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from stream.rollups import RESOLVE_STALE
from supervision import alerts_cli
from sv_helpers import add_site, add_stock, utc
from vreserve import alerts as al


def raise_alert(conn, alert_id, kind, site=None, material=None, cell=None, severity="warning", at=None,
                details=None) -> int:
    """Insert as the stream worker does (ON CONFLICT (alert_id) DO NOTHING); returns rows inserted."""
    cur = conn.execute(
        "INSERT INTO alerts (alert_id, kind, severity, site_id, grid_cell, material_id, message, at, details)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (alert_id) DO NOTHING",
        (alert_id, kind, severity, site, cell, material, f"test {alert_id}", at or utc(2026, 11, 30, 8),
         Jsonb(details or {})))
    return cur.rowcount


def test_one_open_alert_per_kind_site_and_material(conn, world):
    s = f"S-{world.u}"
    add_site(conn, world, s, "O1")
    assert raise_alert(conn, f"jump:{s}:{world.masks}:1", "jump", s, world.masks) == 1
    # the same condition again under another id: counted on the open alert, not a second alert
    assert raise_alert(conn, f"jump:{s}:{world.masks}:2", "jump", s, world.masks, at=utc(2026, 11, 30, 9)) == 0
    # a replay of the open alert's own id is a no-op; another material or kind is another alert
    assert raise_alert(conn, f"jump:{s}:{world.masks}:1", "jump", s, world.masks) == 0
    assert raise_alert(conn, f"jump:{s}:{world.water}:1", "jump", s, world.water) == 1
    assert raise_alert(conn, f"stale:{s}:x", "stale", s) == 1
    open_ = al.list_alerts(conn, al.AlertFilter(site_id=s))
    assert sorted(a.alert_id for a in open_) == sorted([f"jump:{s}:{world.masks}:1", f"jump:{s}:{world.water}:1",
                                                       f"stale:{s}:x"])
    first = al.get_alert(conn, f"jump:{s}:{world.masks}:1")
    assert first.repeats == 1 and first.last_seen_at == utc(2026, 11, 30, 9)
    assert first.details["last_repeat"]["alert_id"] == f"jump:{s}:{world.masks}:2"
    # once resolved, the same condition opens a new alert
    al.resolve(conn, first.alert_id, "api:alice", "counted on site, stock is there")
    assert raise_alert(conn, f"jump:{s}:{world.masks}:3", "jump", s, world.masks) == 1
    assert len(al.list_alerts(conn, al.AlertFilter(site_id=s, material_id=world.masks, state="all"))) == 2


def test_acknowledge_and_resolve_with_actor_note_and_history(conn, world):
    s = f"S-{world.u}"
    add_site(conn, world, s, "O1")
    aid = f"jump:{s}:{world.masks}:7"
    raise_alert(conn, aid, "jump", s, world.masks, severity="critical")
    assert [a.alert_id for a in al.list_alerts(conn, al.AlertFilter(state="unacknowledged", site_id=s))] == [aid]

    rec = al.acknowledge(conn, aid, "api:bob", "calling the owner")
    assert rec.state == "acknowledged" and rec.acknowledged_by == "api:bob" and rec.acknowledge_note == "calling the owner"
    assert al.acknowledge(conn, aid, "api:bob").acknowledged_at == rec.acknowledged_at  # same actor: no change
    with pytest.raises(al.AlertStateError, match="already acknowledged .* by api:bob"):
        al.acknowledge(conn, aid, "api:carol")
    assert al.list_alerts(conn, al.AlertFilter(state="unacknowledged", site_id=s)) == []
    assert [a.alert_id for a in al.list_alerts(conn, al.AlertFilter(state="acknowledged", site_id=s))] == [aid]

    with pytest.raises(ValueError, match="note is required"):
        al.resolve(conn, aid, "api:bob", "  ")
    with pytest.raises(ValueError, match="actor"):
        al.resolve(conn, aid, "", "x")
    with pytest.raises(ValueError, match="control characters"):
        al.acknowledge(conn, aid, "api:bob", "bad\x00note")
    done = al.resolve(conn, aid, "api:bob", "owner moved stock without declaring it")
    assert done.state == "resolved" and done.resolved_by == "api:bob"
    with pytest.raises(al.AlertStateError, match="already resolved"):
        al.resolve(conn, aid, "api:bob", "again")
    with pytest.raises(al.AlertStateError, match="nothing to acknowledge"):
        al.acknowledge(conn, aid, "api:carol")
    with pytest.raises(al.AlertNotFound):
        al.acknowledge(conn, f"nope-{world.u}", "api:bob")
    # resolved alerts go out again on the topic (published_at cleared)
    assert conn.execute("SELECT published_at FROM alerts WHERE alert_id = %s", (aid,)).fetchone()[0] is None
    history = [(h.action, h.actor, h.note) for h in al.alert_actions(conn, aid)]
    assert history == [("opened", "system", f"test {aid}"), ("acknowledged", "api:bob", "calling the owner"),
                       ("resolved", "api:bob", "owner moved stock without declaring it")]


def test_condition_cleared_is_resolved_by_the_system(conn, world):
    """The stream worker's own RESOLVE_STALE (a stale site reported again) is recorded as 'system'."""
    s = f"S-{world.u}"
    add_site(conn, world, s, "O1")
    last = utc(2026, 11, 30, 8)
    add_stock(conn, s, world.masks, 10, "box", last)
    aid = f"stale:{s}:{last.isoformat()}"
    raise_alert(conn, aid, "stale", s, details={"last_ts": last.isoformat()})
    al.acknowledge(conn, aid, "api:bob", "site owner phoned")
    add_stock(conn, s, world.masks, 10, "box", last + timedelta(minutes=5))  # it reports again
    conn.execute(RESOLVE_STALE)
    rec = al.get_alert(conn, aid)
    assert rec.state == "resolved" and rec.resolved_by == "system" and rec.resolve_note == "condition cleared"
    assert [h.action for h in al.alert_actions(conn, aid)] == ["opened", "acknowledged", "resolved"]


def test_filters_are_checked():
    with pytest.raises(ValueError, match="state must be one of"):
        al.filter_sql(al.AlertFilter(state="closed"))
    with pytest.raises(ValueError, match="severity"):
        al.filter_sql(al.AlertFilter(severity="loud"))
    where, params = al.filter_sql(al.AlertFilter(kind="stale", site_id="S1", limit=5))
    assert where == " WHERE resolved_at IS NULL AND kind = %(kind)s AND site_id = %(site_id)s"
    assert params == {"limit": 5, "kind": "stale", "site_id": "S1"}


def test_cli_lists_acknowledges_and_resolves_as_the_os_user(conn, world, settings):
    s = f"S-{world.u}"
    add_site(conn, world, s, "O1")
    aid = f"jump:{s}:{world.masks}:1"
    raise_alert(conn, aid, "jump", s, world.masks, severity="critical")
    runner = CliRunner()
    listed = runner.invoke(alerts_cli.alerts, ["list", "--site", s], obj=settings)
    assert listed.exit_code == 0, listed.output
    assert aid in listed.output and "1 alert(s) (open)" in listed.output
    ack = runner.invoke(alerts_cli.alerts, ["ack", aid, "--note", "looking"], obj=settings)
    assert ack.exit_code == 0, ack.output
    assert f"acknowledged by {al.os_actor()}" in ack.output and al.os_actor().startswith("os-user:")
    missing_note = runner.invoke(alerts_cli.alerts, ["resolve", aid], obj=settings)
    assert missing_note.exit_code != 0 and "--note" in missing_note.output
    res = runner.invoke(alerts_cli.alerts, ["resolve", aid, "--note", "false alarm: sensor recalibrated"], obj=settings)
    assert res.exit_code == 0, res.output
    again = runner.invoke(alerts_cli.alerts, ["resolve", aid, "--note", "x"], obj=settings)
    assert again.exit_code == 1 and "already resolved" in again.output
    shown = runner.invoke(alerts_cli.alerts, ["show", aid], obj=settings)
    assert "resolved" in shown.output and "false alarm: sensor recalibrated" in shown.output
    as_json = runner.invoke(alerts_cli.alerts, ["list", "--site", s, "--state", "resolved", "--json"], obj=settings)
    assert '"state": "resolved"' in as_json.output


def test_audit_plan_weighs_only_unexplained_findings(conn, world):
    """Issue 16 / issue 10: the sites that obeyed their dispatch orders are not ranked first. Old
    raw jump alerts and stale alerts weigh nothing; an open unexplained finding does (a critical
    one fully); one explained later (resolved by the system) no longer does."""
    from vreserve import audit_plan as ap
    from supervision.sql_audits import site_risks

    obeyed, silent, fraud, explained = (f"{k}-{world.u}" for k in ("obeyed", "silent", "fraud", "explained"))
    for s in (obeyed, silent, fraud, explained):
        add_site(conn, world, s, "O1")
    raise_alert(conn, f"jump:{obeyed}:{world.masks}:1", "jump", obeyed, world.masks)   # the old rule, after a pick
    raise_alert(conn, f"stale:{silent}:x", "stale", silent)
    raise_alert(conn, f"pick_not_reflected:{fraud}:{world.masks}:9", "pick_not_reflected", fraud, world.masks,
                severity="critical")
    raise_alert(conn, f"unexplained_change:{explained}:{world.masks}:3", "unexplained_change", explained, world.masks)
    conn.execute("UPDATE alerts SET resolved_at = now() WHERE alert_id = %s",
                 (f"unexplained_change:{explained}:{world.masks}:3",))
    risks = {r.site_id: r for r in site_risks(conn) if r.site_id.endswith(world.u)}
    assert {k: r.open_findings for k, r in risks.items()} == {obeyed: 0, silent: 0, fraud: 3, explained: 0}
    weights = {w.risk.site_id: w.weight for w in ap.weigh(list(risks.values()))}
    assert weights[fraud] == pytest.approx(ap.FLOOR + 1.0)
    assert weights[obeyed] == weights[silent] == weights[explained] == pytest.approx(ap.FLOOR)


def test_movements_and_safety_levels_through_the_cli(conn, world, settings):
    s = f"S-{world.u}"
    add_site(conn, world, s, "O1")
    runner = CliRunner()
    args = ["declare", "--site", s, "--material", world.masks, "--kind", "replenishment", "--qty", "40",
            "--unit", "box", "--at", "2026-11-30T08:00:00Z", "--id", f"M-{world.u}"]
    first = runner.invoke(alerts_cli.movements, args, obj=settings)
    assert first.exit_code == 0 and "recorded" in first.output, first.output
    again = runner.invoke(alerts_cli.movements, args, obj=settings)
    assert "was already recorded" in again.output
    other = runner.invoke(alerts_cli.movements, args[:8] + ["41"] + args[9:], obj=settings)
    assert other.exit_code == 1 and "already declared with other figures" in other.output
    wrong_unit = runner.invoke(alerts_cli.movements, [*args[:10], "kg", *args[11:-1], f"M2-{world.u}"], obj=settings)
    assert wrong_unit.exit_code == 1 and "counted in 'box'" in wrong_unit.output
    row = conn.execute("SELECT kind, qty, actor, source FROM stock_movements WHERE movement_id = %s",
                       (f"M-{world.u}",)).fetchone()
    assert row[0] == "replenishment" and float(row[1]) == 40 and row[2].startswith("os-user:") and row[3] == "cli"

    set_ = runner.invoke(alerts_cli.safety, ["set", "--cell", world.cell, "--material", world.masks, "--qty", "150"],
                         obj=settings)
    assert set_.exit_code == 0 and "150 box" in set_.output, set_.output
    assert float(conn.execute("SELECT safety_qty FROM safety_levels WHERE grid_cell = %s AND material_id = %s",
                              (world.cell, world.masks)).fetchone()[0]) == 150
    nowhere = runner.invoke(alerts_cli.safety, ["set", "--cell", f"x-{world.u}", "--material", world.masks,
                                                "--qty", "1"], obj=settings)
    assert nowhere.exit_code == 1 and "no site in grid cell" in nowhere.output
    negative = runner.invoke(alerts_cli.safety, ["set", "--cell", world.cell, "--material", world.masks,
                                                 "--qty", "-1"], obj=settings)
    assert negative.exit_code == 1 and ">= 0" in negative.output
    listed = runner.invoke(alerts_cli.safety, ["list", "--cell", world.cell], obj=settings)
    assert "1 safety level(s)" in listed.output and "set by os-user:" in listed.output
    assert runner.invoke(alerts_cli.safety, ["remove", "--cell", world.cell, "--material", world.masks],
                         obj=settings).exit_code == 0
    assert runner.invoke(alerts_cli.safety, ["remove", "--cell", world.cell, "--material", world.masks],
                         obj=settings).exit_code == 1


def test_critical_alerts_go_to_webhooks_signed_and_retried(conn, world, settings, tmp_path):
    """A real HTTP receiver that fails the first post: the delivery is retried, signed, once per event."""
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from vreserve import webhooks as wh

    got: list[tuple[dict, bytes]] = []
    fail_once: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            failing = [a for a in fail_once if a.encode() in body]  # the first post of these: 500
            for a in failing:
                fail_once.remove(a)
            code = 500 if failing else 200
            if code == 200:
                got.append((dict(self.headers), body))
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = b"s3cret-" + world.u.encode() * 2
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(secret + b"\n")
    try:
        runner = CliRunner()
        hook = f"duty-{world.u}"
        added = runner.invoke(alerts_cli.webhooks, ["add", "--id", hook, "--url",
                                                    f"http://127.0.0.1:{server.server_port}/page",
                                                    "--secret-file", str(secret_file)], obj=settings)
        assert added.exit_code == 0, added.output
        listed = runner.invoke(alerts_cli.webhooks, ["list"], obj=settings)
        assert hook in listed.output and secret.decode() not in listed.output + added.output
        s = f"S-{world.u}"
        add_site(conn, world, s, "O1")
        crit = f"pick_not_reflected:{s}:{world.masks}:1"
        fail_once.append(crit)
        now = conn.execute("SELECT now()").fetchone()[0]  # a webhook pages alerts of its last day only
        raise_alert(conn, crit, "pick_not_reflected", s, world.masks, severity="critical", at=now)
        raise_alert(conn, f"unexplained_change:{s}:{world.water}:1", "unexplained_change", s, world.water, at=now)

        first = wh.notify_once(conn)
        assert first.failed >= 1 and not [b for _h, b in got if crit.encode() in b]  # the receiver answered 500
        row = conn.execute("SELECT attempts, last_error, next_attempt_at > now() FROM alert_deliveries"
                           " WHERE alert_id = %s AND webhook_id = %s", (crit, hook)).fetchone()
        assert row[0] == 1 and "500" in row[1] and row[2]  # backed off
        assert wh.notify_once(conn).delivered == 0         # not due yet
        conn.execute("UPDATE alert_deliveries SET next_attempt_at = now() WHERE webhook_id = %s", (hook,))
        wh.notify_once(conn)
        mine_got = [(h, b) for h, b in got if crit.encode() in b]
        assert len(mine_got) == 1
        headers, body = mine_got[0]
        assert wh.verify(secret, int(headers["X-Vreserve-Timestamp"]), body, headers["X-Vreserve-Signature"])
        assert not wh.verify(b"another secret of 16", int(headers["X-Vreserve-Timestamp"]), body,
                             headers["X-Vreserve-Signature"])
        assert _json.loads(body)["event"] == "opened" and _json.loads(body)["alert"]["alert_id"] == crit
        assert headers["X-Vreserve-Delivery"] == f"{crit}|{hook}|opened"
        assert not [b for _h, b in got if f"unexplained_change:{s}".encode() in b]  # a warning: not paged
        al.resolve(conn, crit, "api:bob", "counted: goods are gone, sensor was stuck")
        wh.notify_once(conn)
        events = [_json.loads(b)["event"] for _h, b in got if crit.encode() in b]
        assert events == ["opened", "resolved"]
        wh.notify_once(conn)
        assert [_json.loads(b)["event"] for _h, b in got if crit.encode() in b] == ["opened", "resolved"]  # once each
        out = runner.invoke(alerts_cli.alerts, ["notify", "--once"], obj=settings)
        assert out.exit_code == 0 and "delivered" in out.output
        assert runner.invoke(alerts_cli.webhooks, ["remove", hook], obj=settings).exit_code == 0
    finally:
        server.shutdown()
