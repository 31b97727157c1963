"""``vreserve bench console``: the console in headless Chromium against a 10,000-site registry.

Builds a private database (dropped at the end) with a generated registry (ingest's generator) and a
latest reading for every contracted pair, starts `vreserve serve` on a free port, and measures in
Debian's Chromium (Playwright, pointed at /usr/bin/chromium):

- time to first render of the overview: navigation start -> every grid cell drawn and the summary
  shown (the page's own mark), over ``--loads`` fresh page loads; and when the site rows arrived;
- reading -> map latency: a writer updates ``stock_latest`` the way the stream worker commits
  (``--rate`` site readings per second in batches every 100 ms, reading time = commit time); the
  page records, for every reading it draws, draw time - reading time (same machine clock);
- requests per minute per open browser at rest (no data changing) and while readings flow,
  counted by the browser over ``--rest-s`` seconds (the event stream is one long request).

The reading -> map figure covers database -> console -> browser; the stream worker's own latency
(sensor -> database) is in `vreserve bench stream` and adds to it.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import random
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import click

from bench.procs import Proc, child_env, echo, free_port, services_up
from vreserve.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "bench console password"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _seed(dsn: str, sites: int, seed: int) -> int:
    from vreserve.registry_generate import generate_registry
    from vreserve.registry_store import store_registry
    from vreserve import identity as ident
    from vreserve.db import connect

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with connect(dsn, autocommit=True) as conn:
        store_registry(conn, generate_registry(sites, seed=seed))
        pairs = conn.execute("SELECT sm.site_id, sm.material_id, sm.contracted_qty::float8, m.unit FROM site_materials sm"
                             " JOIN materials m USING (material_id)").fetchall()
        with conn.cursor() as cur, cur.copy("COPY stock_latest (site_id, material_id, qty, unit, ts, seq) FROM STDIN") as cp:
            for s, m, q, u in pairs:
                cp.write_row((s, m, round(q * rng.uniform(0.4, 1.1), 3), u, now, 1))
        ident.add_user(conn, "bench-operator", "operator", PASSWORD, "bench")
        return len(pairs)


class Writer(threading.Thread):
    """Updates random sites' stock like the stream worker's commits: a batch every 100 ms."""

    def __init__(self, dsn: str, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        from vreserve.db import connect

        self.conn = connect(dsn, autocommit=True)
        self.pairs = self.conn.execute("SELECT site_id, material_id FROM stock_latest").fetchall()
        self.rate, self.rng, self.stop_at, self.written = rate, random.Random(seed), None, 0
        self.halt = threading.Event()

    def run(self) -> None:
        per_batch = max(1, int(self.rate / 10))
        while not self.halt.wait(0.1):
            batch = [self.pairs[self.rng.randrange(len(self.pairs))] for _ in range(per_batch)]
            with self.conn.transaction():
                self.conn.execute(
                    "UPDATE stock_latest l SET qty = greatest(0, l.qty - 1), ts = clock_timestamp(), seq = l.seq + 1,"
                    " updated_at = now() FROM unnest(%s::text[], %s::text[]) AS b(site_id, material_id)"
                    " WHERE l.site_id = b.site_id AND l.material_id = b.material_id",
                    ([p[0] for p in batch], [p[1] for p in batch]))
            self.written += len(batch)


def _measure(url: str, loads: int, rest_s: float, rate: float, dsn: str, seed: int) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.goto(url + "/")
        page.get_by_label("User name").fill("bench-operator")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.locator("#map[data-ready=true]").wait_for(timeout=60000)
        renders, sites_ms = [], []
        for i in range(loads):
            p = ctx.new_page()
            p.goto(url + "/#/overview")
            p.locator("#map[data-ready=true]").wait_for(timeout=60000)
            renders.append(p.evaluate("new Promise(r => requestAnimationFrame(() => r(window.__vrReadyAt)))"))
            p.wait_for_function("window.__vrSitesAt !== undefined", timeout=60000)
            sites_ms.append(p.evaluate("window.__vrSitesAt"))
            p.close()
        out["first_render_ms"] = renders
        out["sites_loaded_ms"] = sites_ms
        echo(f"first render of the overview: median {statistics.median(renders):.0f} ms, max {max(renders):.0f} ms"
             f" over {loads} loads ({', '.join(f'{r:.0f}' for r in renders)} ms); site rows loaded after"
             f" {statistics.median(sites_ms):.0f} ms (median)")

        counted: list[str] = []
        page.on("request", lambda r: counted.append(r.url))
        time.sleep(rest_s)
        out["requests_at_rest"] = len(counted)
        out["rest_s"] = rest_s
        echo(f"at rest: {len(counted)} requests in {rest_s:.0f} s ({len(counted) * 60 / rest_s:.1f} per minute)")

        page.evaluate("window.__vrStockLatencyMs = []; window.__vrStockDrawn = 0")
        counted.clear()
        writer = Writer(dsn, rate, seed)
        writer.start()
        time.sleep(rest_s)
        writer.halt.set()
        writer.join(5)
        time.sleep(2)
        lat = page.evaluate("window.__vrStockLatencyMs")  # the last 5,000 drawn
        drawn = page.evaluate("window.__vrStockDrawn")
        out.update(readings_written=writer.written, readings_drawn=drawn, latency_ms=lat,
                   requests_live=len(counted))
        echo(f"reading -> map: {writer.written} readings written at {rate:g}/s, {drawn} drawn (latency of the last {len(lat)}); p50 "
             f"{_pct(lat, 0.5):.0f} ms, p99 {_pct(lat, 0.99):.0f} ms, max {max(lat) if lat else float('nan'):.0f} ms;"
             f" {len(counted)} requests in {rest_s:.0f} s while readings flowed")
        browser.close()
    return out


def main(settings: Settings, sites: int = 10_000, loads: int = 5, rest_s: float = 60.0, rate: float = 200.0,
         seed: int = 1) -> dict:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate

    info = conninfo_to_dict(settings.pg_dsn)
    admin = make_conninfo(**{**info, "dbname": "postgres"})
    dbname = f"vr_bench_console_{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(**{**info, "dbname": dbname})
    with connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    server = None
    try:
        migrate(dsn)
        echo(f"[1/3] registry of {sites:,} sites with a reading for every contracted pair ...")
        pairs = _seed(dsn, sites, seed)
        echo(f"      {pairs:,} (site, material) readings")
        port = free_port()
        echo("[2/3] vreserve serve ...")
        server = Proc([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"],
                      child_env(settings.with_(pg_dsn=dsn)), "serve")
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.proc.poll() is not None:
                raise click.ClickException("vreserve serve did not start:\n" + "\n".join(server.lines[-20:]))
            time.sleep(0.3)
        echo("[3/3] headless Chromium ...")
        return _measure(f"http://127.0.0.1:{port}", loads, rest_s, rate, dsn, seed)
    finally:
        if server is not None:
            server.stop()
        with connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@click.command("console")
@click.option("--sites", default=10_000, show_default=True, type=int)
@click.option("--loads", default=5, show_default=True, type=int, help="Fresh page loads timed.")
@click.option("--rest-s", default=60.0, show_default=True, type=float, help="Seconds counted at rest and while live.")
@click.option("--rate", default=200.0, show_default=True, type=float, help="Site readings per second while live.")
@click.pass_obj
def command(settings: Settings, sites: int, loads: int, rest_s: float, rate: float) -> None:
    """Overview first render (10k sites), reading -> map latency, requests per minute at rest."""
    services_up(settings)
    main(settings, sites=sites, loads=loads, rest_s=rest_s, rate=rate)
