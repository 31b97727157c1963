"""``vreserve bench api``: the HTTP API under 50 concurrent clients.

A private database (dropped at the end) with a generated 10,000-site registry and a reading for
every contracted pair, an emergency with orders on one carrier's routes, a viewer and a carrier
token; `vreserve serve` on a free loopback port (``--workers`` processes). Then, for
``--seconds`` each:

- reads: every client loops ``GET /api/v1/sites/{random site}/stock`` (a viewer's bearer token);
- posts: every client loops ``POST /api/v1/orders/{random order}/status`` (the carrier's token;
  the answer comes after the broker acknowledged the record on the order-status topic, so the
  latency is end to end to the topic).

Each phase runs on two servers in turn (same database, same clients): uvicorn with httptools and
uvloop (what `vreserve serve` takes when installed) and uvicorn's pure-Python stack (h11 and
asyncio's loop), and prints their ratio: the before/after of that choice in one run.

Prints requests/s, p50 / p99 latency (ms) and errors with the machine's load average beside each
phase, and a baseline in the same run (GET /api/docs: a trivial route through the same server,
middleware and client, no identity, no database) for the ratio: on a shared machine the absolute
figures move with the load, the ratio says what the API itself costs. A sequential phase (one
client) gives each route's own cost in ms per request, the baseline's subtracted. Targets: reads 500/s with p99 < 200 ms,
posts 200/s with p99 < 300 ms. The clients (asyncio + httpx, one process) share the machine.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import click
import httpx

from bench.procs import Proc, child_env, free_port, services_up
from vreserve.settings import Settings

PASSWORD = "bench-password-1"


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _seed(dsn: str, sites: int, orders: int) -> tuple[list[str], list[str], str]:
    """Registry, readings, an emergency with orders, a viewer and a carrier token."""
    from vreserve.registry_generate import generate_registry
    from vreserve.registry_store import store_registry
    from vreserve import identity as ident
    from vreserve.db import connect

    now = datetime.now(timezone.utc)
    with connect(dsn, autocommit=True) as conn:
        store_registry(conn, generate_registry(sites, seed=1))
        pairs = conn.execute("SELECT c.site_id, c.material_id, c.committed_qty::float8, m.unit FROM contracts c"
                             " JOIN materials m USING (material_id)").fetchall()
        with conn.cursor() as cur, cur.copy("COPY stock_latest (site_id, material_id, qty, unit, ts, seq)"
                                            " FROM STDIN") as cp:
            for s, m, q, u in pairs:
                cp.write_row((s, m, q, u, now, 1))
        conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                     " period_length_s, demand_source) VALUES ('EM-bench', 'wuhan', %s, 'bench', 'bench', 4, 3600,"
                     " 'wuhan')", (now,))
        conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status) VALUES"
                     " ('P-bench', 'EM-bench', 1, %s, 'optimal')", (now,))
        with conn.cursor() as cur, cur.copy("COPY dispatch_orders (order_id, plan_id, emergency_id, period, leg,"
                                            " origin, destination, material_id, qty, unit, created_at, status_at)"
                                            " FROM STDIN") as cp:
            for i in range(orders):
                s, m, _q, u = pairs[i % len(pairs)]
                cp.write_row((f"O-bench-{i:06d}", "P-bench", "EM-bench", 1, "supply", s, "DC-1", m, 5, u, now, now))
        ident.add_user(conn, "bench-viewer", "viewer", PASSWORD, "bench")
        ident.add_carrier(conn, "bench-carrier", "Bench carrier", ["wuhan"])
        carrier_token = ident.issue_token(conn, "carrier", "bench-carrier", now + timedelta(hours=2), "bench")[1]
        site_ids = [r[0] for r in conn.execute("SELECT site_id FROM sites")]
    return site_ids, [f"O-bench-{i:06d}" for i in range(orders)], carrier_token


async def _load(url: str, token: str, clients: int, seconds: float, request) -> tuple[list[float], int, int]:
    """``clients`` loops of ``request(client, rng)`` for ``seconds``: latencies (s), ok, errors."""
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def one(k: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(k)
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                r = await request(client, rng)
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            counts["ok" if ok else "err"] += 1

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as client:
        await asyncio.gather(*(one(k, client) for k in range(clients)))
    return latencies, counts["ok"], counts["err"]


def _figures(name: str, latencies: list[float], ok: int, err: int, seconds: float) -> dict:
    lat = sorted(latencies)
    pct = (lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else (lambda p: float("nan"))
    load = os.getloadavg()[0]
    fig = {"requests_per_s": ok / seconds, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "ok": ok, "errors": err,
           "load_average_1min": load}
    click.echo(f"{name:<34} {fig['requests_per_s']:>8.0f} req/s   p50 {fig['p50_ms']:>7.1f} ms   "
               f"p99 {fig['p99_ms']:>7.1f} ms   {ok} ok, {err} errors   (load average {load:.1f} on "
               f"{os.cpu_count()} cores)")
    return fig


def _sequential(url: str, tokens: dict[str, str], requests: dict, n: int) -> dict[str, float]:
    """Mean ms per request of each route with one client, interleaved so the load hits all alike."""
    async def go() -> dict[str, float]:
        spent = {name: 0.0 for name in requests}
        clients = {name: httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {tokens[name]}"},
                                           timeout=30) for name in requests}
        rng = random.Random(0)
        try:
            for _ in range(n):
                for name, request in requests.items():
                    t0 = time.perf_counter()
                    (await request(clients[name], rng)).raise_for_status()
                    spent[name] += time.perf_counter() - t0
        finally:
            for c in clients.values():
                await c.aclose()
        return {name: 1000 * t / n for name, t in spent.items()}
    return asyncio.run(go())


#: The server stacks one run compares: uvicorn with its C HTTP parser and event loop (what `vreserve
#: serve` takes when they are installed) against its pure-Python ones, on the same database and load.
STACKS = {"httptools+uvloop": ("httptools", "uvloop"), "h11+asyncio": ("h11", "asyncio")}


def _stacks(compare: bool) -> dict[str, tuple[str, str]]:
    """The stacks to run: both when comparing and the C ones are installed, else uvicorn's choice."""
    if not all(importlib.util.find_spec(m) for m in ("httptools", "uvloop")):
        _say("httptools / uvloop not installed: one server on uvicorn's pure-Python stack, no comparison")
        return {"auto": ("auto", "auto")}
    return STACKS if compare else {"httptools+uvloop": STACKS["httptools+uvloop"]}


def _requests(site_ids: list[str], order_ids: list[str]) -> dict:
    async def floor(client, _rng):
        return await client.get("/api/docs")

    async def read(client, rng):
        return await client.get(f"/api/v1/sites/{site_ids[rng.randrange(len(site_ids))]}/stock")

    async def post(client, rng):
        oid = order_ids[rng.randrange(len(order_ids))]
        return await client.post(f"/api/v1/orders/{oid}/status",
                                 json={"status": "accepted", "status_id": f"S-{uuid.uuid4().hex[:16]}"})
    return {"baseline": floor, "read": read, "post": post}


PHASES = (("baseline", "baseline GET /api/docs", "viewer"), ("read", "GET /sites/{id}/stock", "viewer"),
          ("post", "POST /orders/{id}/status", "carrier"))


def _measure(urls: dict[str, str], tokens: dict[str, str], requests: dict, clients: int, seconds: float) -> dict:
    """Sequential costs, then each loaded phase on every stack in turn (the same load for both)."""
    figures: dict = {name: {} for name in urls}
    _say("[2/3] one client, 100 requests per route, interleaved: what each costs on its own")
    for name, url in urls.items():
        seq = _sequential(url, {"baseline": tokens["viewer"], "read": tokens["viewer"], "post": tokens["carrier"]},
                          requests, 100)
        figures[name]["sequential_ms"] = seq
        click.echo(f"[{name}] sequential, ms per request: baseline GET /api/docs {seq['baseline']:.1f}, GET live "
                   f"stock {seq['read']:.1f} (API's own {seq['read'] - seq['baseline']:.1f}), POST status "
                   f"{seq['post']:.1f} (API's own {seq['post'] - seq['baseline']:.1f}; includes the broker's ack)"
                   f"   (load average {os.getloadavg()[0]:.1f})")
    _say(f"[3/3] {clients} clients x {seconds:g} s per phase and stack")
    for key, label, who in PHASES:
        for name, url in urls.items():
            figures[name][key] = _figures(f"[{name}] {label}", *asyncio.run(
                _load(url, tokens[who], clients, seconds, requests[key])), seconds)
    return figures


def _verdicts(figures: dict, workers: int, clients: int) -> None:
    for name, fig in figures.items():
        reads, posts, base = fig["read"], fig["post"], fig["baseline"]
        click.echo(f"[{name}] targets: reads 500 req/s with p99 < 200 ms: "
                   f"{'met' if _met(reads, 500, 200) else 'NOT met'}; posts 200 req/s with p99 < 300 ms: "
                   f"{'met' if _met(posts, 200, 300) else 'NOT met'} ({workers} server worker process(es), "
                   f"{clients} clients, one machine); reads at {reads['requests_per_s'] / base['requests_per_s']:.0%}"
                   f" of the baseline's rate, posts at {posts['requests_per_s'] / base['requests_per_s']:.0%}")
    if set(figures) == set(STACKS):
        new, old = figures["httptools+uvloop"], figures["h11+asyncio"]
        click.echo("httptools+uvloop vs h11+asyncio in this run (requests/s ratio; p99 ms): " + "; ".join(
            f"{key} {new[key]['requests_per_s'] / max(old[key]['requests_per_s'], 1e-9):.2f}x "
            f"({new[key]['p99_ms']:.0f} vs {old[key]['p99_ms']:.0f} ms)" for key, _l, _w in PHASES))


def main(settings: Settings, sites: int, orders: int, clients: int, seconds: float, workers: int,
         compare: bool = True) -> dict:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    info = conninfo_to_dict(settings.pg_dsn)
    admin = make_conninfo(**{**info, "dbname": "postgres"})
    run = uuid.uuid4().hex[:8]
    private = settings.with_(pg_dsn=make_conninfo(**{**info, "dbname": f"vr_bench_api_{run}"}),
                             topic_prefix=f"bapi{run}.")
    with connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "vr_bench_api_{run}"')
    servers: list[Proc] = []
    try:
        migrate(private.pg_dsn)
        ensure_topics(private)
        _say(f"[1/3] registry of {sites} sites, readings, {orders} orders ...")
        site_ids, order_ids, carrier_token = _seed(private.pg_dsn, sites, orders)
        urls = {}
        for name, (http_impl, loop) in _stacks(compare).items():
            port = free_port()
            servers.append(Proc([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}",
                                 "--workers", str(workers), "--http", http_impl, "--loop", loop],
                                child_env(private), f"serve-{name}"))
            urls[name] = f"http://127.0.0.1:{port}"
            _wait(urls[name], servers[-1])
        viewer = httpx.post(f"{next(iter(urls.values()))}/api/v1/auth/token",
                            data={"username": "bench-viewer", "password": PASSWORD})
        viewer.raise_for_status()
        tokens = {"viewer": viewer.json()["access_token"], "carrier": carrier_token}
        figures = _measure(urls, tokens, _requests(site_ids, order_ids), clients, seconds)
        _verdicts(figures, workers, clients)
        return figures
    finally:
        for server in servers:
            server.stop()
        with connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "vr_bench_api_{run}" WITH (FORCE)')


def _met(fig: dict, rate: float, p99_ms: float) -> bool:
    return fig["requests_per_s"] >= rate and fig["p99_ms"] < p99_ms and fig["errors"] == 0


def _wait(url: str, server: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.proc.poll() is not None:
            raise click.ClickException("vreserve serve exited:\n" + "\n".join(server.lines[-20:]))
        time.sleep(0.2)
    raise click.ClickException("vreserve serve did not answer within 60 s")


@click.command("api")
@click.option("--sites", default=10_000, show_default=True)
@click.option("--orders", default=5_000, show_default=True)
@click.option("--clients", default=50, show_default=True, help="Concurrent clients.")
@click.option("--seconds", default=15.0, show_default=True, help="Per phase.")
@click.option("--workers", default=2, show_default=True, help="Server worker processes.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also run a server on uvicorn's pure-Python stack (h11 + asyncio) in the same run.")
@click.pass_obj
def command(settings: Settings, sites: int, orders: int, clients: int, seconds: float, workers: int,
            compare: bool) -> None:
    """The HTTP API: live-stock reads and order-status posts under concurrent clients (req/s, p99)."""
    services_up(settings)
    main(settings, sites, orders, clients, seconds, workers, compare)
