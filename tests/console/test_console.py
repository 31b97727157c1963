"""The console in a real browser (Debian's Chromium via Playwright) against the real services and a
small live fleet: an operator logs in, sees the map with the registry's grid cells, sees a site's
stock change after its reading, acknowledges a low-stock alert the stream worker raised, declares
an emergency from the page (after a confirmation showing the ideal shortage), watches period 1's
orders appear, ends it, and logs out; a viewer sees no declare button. Screenshots: out/console/."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.console.conftest import PASSWORD, ROOT, _env, free_port, console_page, login, new_context, wait_for
from vreserve.assessment import assess, rank_owners
from vreserve.db import connect
from vreserve.sql_assessment import load_site_facts

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _number(text: str) -> float:
    """A displayed quantity ("1,234 box") as a number."""
    return float(re.sub(r"[^0-9.\-]", "", text.split(" ")[0]))


def test_operator_map_site_alert_emergency_orders_logout(fleet, browser, shots):
    with console_page(browser) as (page, errors):
        login(page, fleet, "operator1")
        _overview_has_every_cell_and_is_live(page, fleet, shots)
        with connect(fleet.settings.pg_dsn, autocommit=True) as conn:
            site, material = _site_stock_follows_its_readings(page, fleet, conn, shots)
            _acknowledge_a_low_stock_alert(page, fleet, conn, shots, site, material)
            em = _declare_and_watch_period_1(page, fleet, conn, shots)
            _order_timeline(page, fleet, shots, em)
            _end(page, fleet, conn, em)
            _assessment_ranking(page, fleet, conn, shots, em)
        # log out: back at the login form, the session no longer works
        page.get_by_role("button", name="Log out").click()
        page.get_by_role("button", name="Log in").wait_for()
        assert page.evaluate("fetch('/api/v1/auth/me').then(r => r.status)") == 401
        assert not errors, errors


def _overview_has_every_cell_and_is_live(page, fleet, shots) -> None:
    """One SVG path per grid cell of the registry, live events connected, times in the operator's zone."""
    page.locator("#map[data-ready=true]").wait_for()
    wait_for(lambda: page.locator("#map path.vr-cell").count() == len(fleet.cells), 10, f"{len(fleet.cells)} cells drawn")
    page.get_by_role("status", name="Live updates").filter(has_text="live").wait_for()
    assert page.locator("#count-reporting b").inner_text() != "0"
    assert page.get_by_text("Asia/Shanghai").is_visible()
    page.mouse.move(1390, 890)  # no tooltip in the picture
    page.screenshot(path=str(shots / "overview.png"))
    # end to end, sensor reading time -> drawn on the map (fleet, MQTT, bridge, Kafka, stream worker,
    # database, console, browser); the bound is generous (the target is 2 s; this machine is shared)
    drawn = "window.__vrStockLatencyMs || []"
    lat = sorted(wait_for(lambda: page.evaluate(drawn) if len(page.evaluate(drawn)) >= 100 else None,
                          30, "100 readings drawn on the map"))
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    print(f"\nsensor reading -> map, {len(lat)} readings: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    assert p99 < 10_000, f"reading -> map p99 {p99:.0f} ms"


def _site_stock_follows_its_readings(page, fleet, conn, shots) -> tuple[str, str]:
    """A consumable's stock on the site page changes after the site's next reading, to a stored value."""
    site, material = conn.execute(
        "SELECT l.site_id, l.material_id FROM stock_latest l JOIN materials m USING (material_id)"
        " WHERE m.consumable AND l.site_id LIKE %s ORDER BY l.qty DESC LIMIT 1",
        (fleet.sites[0].split("-")[0] + "-%",)).fetchone()
    page.goto(f"{fleet.url}/#/site/{site}")
    cell = page.locator(f"td[data-material='{material}']")
    cell.wait_for()
    first = cell.inner_text()
    wait_for(lambda: cell.inner_text() != first, 30, f"{site} {material} to change on the page")
    shown = _number(cell.inner_text())
    recent = [float(r[0]) for r in conn.execute(
        "SELECT qty FROM stock_readings WHERE site_id = %s AND material_id = %s ORDER BY ts DESC LIMIT 5",
        (site, material))]
    assert any(abs(shown - q) <= max(1.0, 0.001 * q) for q in recent), (shown, recent)
    page.screenshot(path=str(shots / "site.png"), full_page=True)
    return site, material


def _acknowledge_a_low_stock_alert(page, fleet, conn, shots, site: str, material: str) -> None:
    """A safety level above the cell's stock makes the stream worker raise low_stock; acknowledge it."""
    grid_cell = conn.execute("SELECT grid_cell FROM sites WHERE site_id = %s", (site,)).fetchone()[0]
    conn.execute("INSERT INTO safety_levels VALUES (%s, %s, 1e9)", (grid_cell, material))
    alert_id = wait_for(lambda: (conn.execute(
        "SELECT alert_id FROM alerts WHERE kind = 'low_stock' AND grid_cell = %s AND resolved_at IS NULL",
        (grid_cell,)).fetchone() or [None])[0], 30, "a low_stock alert")
    page.goto(f"{fleet.url}/#/alerts")
    button = page.get_by_role("button", name=f"Acknowledge alert {alert_id}")
    button.wait_for()
    page.get_by_label(f"Note for alert {alert_id}").fill("depot asked to restock")
    button.click()
    page.locator(f"tr[data-alert='{alert_id}']").get_by_text("by user:operator1").wait_for()
    ack = conn.execute("SELECT acknowledged_by, acknowledge_note FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
    assert ack == ("user:operator1", "depot asked to restock")
    page.screenshot(path=str(shots / "alerts.png"), full_page=True)


def _declare_and_watch_period_1(page, fleet, conn, shots) -> str:
    """Declare from the page (the confirmation shows the ideal shortage before anything is published);
    the emergency, period 1's plan and its orders then appear without a reload."""
    page.goto(f"{fleet.url}/#/emergency")
    page.get_by_label("Periods").fill("3")
    page.get_by_label("Period length (seconds)").fill("12")
    page.get_by_label("Reason", exact=True).fill("browser test outbreak")
    page.get_by_role("button", name="Declare emergency…").click()
    dialog = page.get_by_role("dialog", name="Confirm the declaration")
    dialog.get_by_role("columnheader", name="Ideal shortage").wait_for()
    assert dialog.get_by_role("row").count() >= 5  # header + the wuhan pack's 4 materials
    assert conn.execute("SELECT count(*) FROM emergencies").fetchone()[0] == 0  # nothing published yet
    page.screenshot(path=str(shots / "declare-confirmation.png"))
    t0 = time.monotonic()
    dialog.get_by_role("button", name="Publish declaration").click()
    em = wait_for(lambda: (conn.execute("SELECT emergency_id FROM emergencies WHERE ended_at IS NULL")
                           .fetchone() or [None])[0], 30, "the emergency accepted by the dispatcher")
    section = page.get_by_role("region", name=f"Emergency {em}")
    section.wait_for(timeout=30000)
    plan = section.get_by_role("cell", name="optimal").or_(section.get_by_role("cell", name="feasible")).first
    plan.wait_for(timeout=60000)
    orders_table = section.get_by_role("table").filter(has_text="in transit")
    wait_for(lambda: orders_table.locator("tbody tr").count() >= 1, 60, "period 1's orders on the page")
    print(f"\ndeclare click -> period 1 orders on the page: {time.monotonic() - t0:.1f} s")
    assert conn.execute("SELECT count(*) FROM dispatch_orders WHERE emergency_id = %s AND period = 1",
                        (em,)).fetchone()[0] > 0
    _flows_on_the_map(section, conn, em)
    page.mouse.move(1390, 890)  # no tooltip in the picture
    page.screenshot(path=str(shots / "emergency.png"), full_page=True)
    # the wall screen too: the overview map draws the running plan's flows over the cells
    page.goto(f"{fleet.url}/#/overview")
    wait_for(lambda: page.locator("#map path.vr-flow").count() >= 1, 30, "flows on the overview map")
    page.get_by_role("region", name="Flows").get_by_role("group", name="Flow legend").wait_for()
    page.mouse.move(1390, 890)
    page.screenshot(path=str(shots / "overview-emergency.png"))
    return em


def _flows_on_the_map(section, conn, em: str) -> None:
    """The plan's flows are drawn from the positions of the registry and the pack (supply and delivery
    lines of the chosen material), with a legend in that material's unit."""
    flow_map = section.get_by_role("region", name=f"Flows of {em} on the map")
    wait_for(lambda: flow_map.locator("path.vr-flow-supply").count() >= 1
             and flow_map.locator("path.vr-flow-delivery").count() >= 1, 30, "supply and delivery flows on the map")
    material = section.get_by_label("Flows of material").input_value()
    unit = conn.execute("SELECT unit FROM materials WHERE material_id = %s", (material,)).fetchone()[0]
    assert f"of {material} per arc, in {unit}" in section.get_by_role("group", name="Flow legend").inner_text()
    planned = conn.execute("SELECT count(DISTINCT (leg, origin, destination)) FROM dispatch_orders"
                           " WHERE emergency_id = %s AND material_id = %s", (em, material)).fetchone()[0]
    assert 1 <= flow_map.locator("path.vr-flow").count() <= planned


def _order_timeline(page, fleet, shots, em: str) -> None:
    """The orders of the emergency, and one order's status timeline."""
    page.goto(f"{fleet.url}/#/orders/{em}")
    first_order = page.locator("tr[data-order]").first
    first_order.wait_for()
    oid = first_order.get_attribute("data-order")
    page.get_by_role("button", name=f"Timeline of order {oid}").click()
    page.get_by_role("list", name=f"Status timeline of {oid}").get_by_text("created (open)").wait_for()
    page.screenshot(path=str(shots / "orders.png"), full_page=True)


def _end(page, fleet, conn, em: str) -> None:
    """End the emergency from the page; the end event's actor is the operator."""
    page.goto(f"{fleet.url}/#/emergency")
    page.get_by_label("Reason to end").fill("browser test done")
    page.get_by_role("button", name="End emergency").click()
    ended_by = wait_for(lambda: conn.execute("SELECT ended_by FROM emergencies WHERE emergency_id = %s",
                                             (em,)).fetchone()[0], 30, "the emergency ended")
    assert ended_by == "user:operator1"


def _assessment_ranking(page, fleet, conn, shots, em: str) -> None:
    """The ended emergency's suppliers ranked: the same sites and owners as the shared assessment code
    finds, every figure's column with its unit."""
    facts, _ = load_site_facts(conn, em, fleet.settings.reading_interval_s)
    sites, _ = assess(facts)
    owners = rank_owners(sites, facts)
    page.goto(f"{fleet.url}/#/assessment/{em}")
    ranked = page.get_by_role("region", name="Sites ranked")
    ranked.get_by_role("columnheader", name="Median response (min)").wait_for()
    shown = ranked.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(shown) == sorted(s.site_id for s in sites) and shown, shown
    assert page.get_by_role("region", name="Owners ranked").locator("tbody tr").count() == len(owners)
    assert ranked.locator("tbody tr").first.locator("td").nth(4).inner_text().endswith("%")
    page.screenshot(path=str(shots / "assessment.png"), full_page=True)


def test_viewer_sees_no_declare_or_acknowledge_and_api_refuses(fleet, browser, shots):
    ctx = new_context(browser)
    page = ctx.new_page()
    try:
        login(page, fleet, "viewer1")
        page.goto(f"{fleet.url}/#/emergency")
        page.get_by_role("heading", name="Regions").wait_for()
        assert page.get_by_role("button", name="Declare emergency…").count() == 0
        assert page.get_by_role("link", name="Settlement").is_hidden()
        page.screenshot(path=str(shots / "viewer-emergency.png"))
        page.goto(f"{fleet.url}/#/alerts")
        page.get_by_role("heading", name="Alerts").wait_for()
        page.get_by_text(re.compile(r"^\d+ alerts?$")).wait_for()
        assert page.get_by_role("button", name=re.compile("^Acknowledge")).count() == 0
        # the page hides the control, and the API refuses it anyway
        status = page.evaluate("""fetch('/api/v1/console/declare-preview', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': decodeURIComponent(
              (document.cookie.match(/vr_csrf=([^;]+)/) || [])[1] || '')},
            body: JSON.stringify({region: 'wuhan', demand_source: 'wuhan', periods: 2})}).then(r => r.status)""")
        assert status == 403
    finally:
        ctx.close()


def test_console_routes_need_a_login(fleet):
    assert httpx.get(f"{fleet.url}/api/v1/console/overview").status_code == 401
    assert httpx.get(f"{fleet.url}/api/v1/console/events", headers={"Accept": "text/event-stream"}).status_code == 401
    page = httpx.get(f"{fleet.url}/")
    assert page.status_code == 200 and "vreserve command centre" in page.text
    assert "https://" not in page.text  # nothing from a CDN


def test_serve_stops_promptly_with_a_console_event_stream_open(fleet):
    """SIGTERM ends `vreserve serve` although an event stream (which never ends by itself) is open."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=_env(fleet.settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "the second serve")
        token = httpx.post(f"{url}/api/v1/auth/token", data={"username": "viewer1", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": "text/event-stream"}
        opened = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream("GET", f"{url}/api/v1/console/events", headers=headers, timeout=60) as r:
                    for _ in r.iter_bytes():
                        opened.set()
            except httpx.HTTPError:
                pass

        threading.Thread(target=listen, daemon=True).start()
        assert opened.wait(20), "the event stream did not open"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
