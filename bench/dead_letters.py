"""``vreserve bench dead-letters``: how long ``GET /api/v1/sites/{id}/dead-letters`` takes on a
dead-letter topic holding many refusals, one at a time and several at once.

A private database and topic prefix; N dead letters over S sites written as the bridge writes them
(key = site id); one ``vreserve serve`` from this tree and, with ``--against``, one from another
source tree (e.g. main before the change), measured in the same run, phases alternating. Prints
latency per phase and the load average beside it.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import httpx

from bench.procs import Proc, child_env, free_port, services_up
from vreserve.settings import Settings

PASSWORD = "bench-dead-letters-password"


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _write_letters(settings: Settings, letters: int, sites: list[str]) -> None:
    """``letters`` dead letters, round robin over ``sites``, a second apart ending now."""
    from vreserve import kafka_clients, topics
    from vreserve.kafka_access import BRIDGE
    from vreserve.schemas.readings import DeadLetter

    name = settings.topic(topics.READINGS_DEAD_LETTER)
    start = datetime.now(timezone.utc) - timedelta(seconds=letters)
    producer = kafka_clients.producer(settings, BRIDGE, linger_ms=20)
    try:
        for i in range(letters):
            site = sites[i % len(sites)]
            letter = DeadLetter(source="mqtt", reason=f"bench refusal {i}: qty must be >= 0",
                                payload=f'{{"site_id": "{site}", "seq": {i}}}'.encode(),
                                at=start + timedelta(seconds=i), mqtt_topic=f"vr/v1/sites/{site}/stock",
                                context={"kind": "schema", "site_id": site})
            producer.send(name, key=site.encode(), value=letter.to_json())
        producer.flush(60)
    finally:
        producer.close()


def _wait_ready(url: str, token: str, site: str, server: Proc, timeout: float = 120) -> tuple[float, bool]:
    """Seconds from now until the route first answers 200 (a server's start-up read included), and
    whether that server answers from the in-memory index (its answers say ``complete``): which code
    each server runs, shown, so a comparison of the same code with itself cannot pass for a before/after."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if server.proc.poll() is not None:
            raise click.ClickException("vreserve serve exited:\n" + "\n".join(server.lines[-20:]))
        try:
            r = httpx.get(f"{url}/api/v1/sites/{site}/dead-letters", headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
            if r.status_code == 200:
                return time.monotonic() - t0, "complete" in r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{url}: the dead-letters route did not answer 200 within {timeout:.0f} s")


async def _burst(url: str, token: str, sites: list[str], parallel: int) -> tuple[float, list[float], int]:
    """``parallel`` requests at once (different sites): wall time, each one's latency, non-200 count."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                                 limits=httpx.Limits(max_connections=parallel)) as client:
        async def one(site: str) -> tuple[float, int]:
            t0 = time.perf_counter()
            r = await client.get(f"/api/v1/sites/{site}/dead-letters", params={"limit": 50})
            return time.perf_counter() - t0, r.status_code

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(sites[k % len(sites)]) for k in range(parallel)))
        return time.perf_counter() - t0, [d[0] for d in done], sum(d[1] != 200 for d in done)


def _sequential(url: str, token: str, sites: list[str], n: int) -> tuple[list[float], int]:
    latencies, bad = [], 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        for k in range(n):
            t0 = time.perf_counter()
            r = client.get(f"/api/v1/sites/{sites[k % len(sites)]}/dead-letters", params={"limit": 50})
            latencies.append(time.perf_counter() - t0)
            bad += r.status_code != 200
    return latencies, bad


def _ms(values: list[float]) -> str:
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    return f"p50 {statistics.median(s) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {s[-1] * 1000:.1f} ms"


def main(settings: Settings, letters: int, n_sites: int, requests: int, parallel: int, against: str | None) -> dict:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve import identity as ident
    from vreserve.db import connect, migrate
    from vreserve.kafka_admin import ensure_topics

    info = conninfo_to_dict(settings.pg_dsn)
    admin = make_conninfo(**{**info, "dbname": "postgres"})
    run = uuid.uuid4().hex[:8]
    db = f"vr_bench_dl_{run}"
    private = settings.with_(pg_dsn=make_conninfo(**{**info, "dbname": db}), topic_prefix=f"bdl{run}.")
    with connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    servers: dict[str, tuple[str, Proc]] = {}
    figures: dict = {}
    try:
        migrate(private.pg_dsn)
        ensure_topics(private)
        with connect(private.pg_dsn, autocommit=True) as conn:
            ident.add_user(conn, "bench-viewer", "viewer", PASSWORD, "bench")
        sites = [f"dl-site-{i:04d}" for i in range(n_sites)]
        t0 = time.monotonic()
        _write_letters(private, letters, sites)
        click.echo(f"wrote {letters} dead letters over {n_sites} sites in {time.monotonic() - t0:.1f} s")
        trees = {"ours": None} | ({f"against {Path(against).name}": str(Path(against).resolve())} if against else {})
        for name, tree in trees.items():
            port = free_port()
            env = child_env(private, **({"PYTHONPATH": tree} if tree else {}))
            server = Proc([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}",
                           "--workers", "1"], env, f"serve-{name}", own_session=False, cwd=tree)
            servers[name] = (f"http://127.0.0.1:{port}", server)
        token = None
        for name, (url, server) in servers.items():
            deadline = time.monotonic() + 60
            while token is None and time.monotonic() < deadline:
                try:
                    r = httpx.post(f"{url}/api/v1/auth/token", data={"username": "bench-viewer", "password": PASSWORD})
                    token = r.json()["access_token"] if r.status_code == 200 else None
                except httpx.HTTPError:
                    time.sleep(0.3)
            ready_s, indexed = _wait_ready(url, token, sites[0], server)
            figures[name] = {"ready_s": ready_s, "reads": "in-memory index" if indexed else "a consumer per request"}
        for phase in ("sequential", "parallel"):
            for name, (url, _server) in servers.items():
                load = _loadavg()
                if phase == "sequential":
                    lat, bad = _sequential(url, token, sites, requests)
                    click.echo(f"{name:>14}  {requests} requests one at a time: {_ms(lat)}; non-200: {bad}"
                               f"  (load {load})")
                    figures[name]["sequential"] = {"p50_ms": statistics.median(lat) * 1000, "max_ms": max(lat) * 1000,
                                                   "non_200": bad, "load": load}
                else:
                    wall, lat, bad = asyncio.run(_burst(url, token, sites, parallel))
                    click.echo(f"{name:>14}  {parallel} requests at once: all answered in {wall * 1000:.0f} ms "
                               f"({_ms(lat)}); non-200: {bad}  (load {load})")
                    figures[name]["parallel"] = {"wall_ms": wall * 1000, "non_200": bad, "load": load}
        for name in servers:
            click.echo(f"{name:>14}  reads with {figures[name]['reads']}; first 200 after start: "
                       f"{figures[name]['ready_s']:.1f} s")
        return figures
    finally:
        for _url, server in servers.values():
            server.stop()
        with connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _drop_topics(private)


def _drop_topics(settings: Settings) -> None:
    """The private prefix's topics go with the run (10k letters are not left on the shared broker)."""
    from vreserve import kafka_clients
    from vreserve.kafka_access import ADMIN

    client = kafka_clients.admin(settings, ADMIN)
    try:
        mine = [t for t in client.list_topics() if t.startswith(settings.topic_prefix)]
        if mine:
            client.delete_topics(mine)
    except Exception as exc:  # noqa: BLE001 - cleanup: say it, do not hide the figures
        click.echo(f"could not delete the bench topics {settings.topic_prefix}*: {exc}", err=True)
    finally:
        client.close()


@click.command("dead-letters")
@click.option("--letters", default=10_000, show_default=True, help="Dead letters on the topic.")
@click.option("--sites", "n_sites", default=100, show_default=True, help="Sites they are spread over.")
@click.option("--requests", default=20, show_default=True, help="Sequential requests per server.")
@click.option("--parallel", default=8, show_default=True, help="Requests sent at once per server.")
@click.option("--against", type=click.Path(exists=True, file_okay=False),
              help="Also run the server from this source tree (e.g. main): a before/after in one run.")
@click.pass_obj
def command(settings: Settings, letters: int, n_sites: int, requests: int, parallel: int,
            against: str | None) -> None:
    """The dead-letters route on a long topic: latency one at a time and in a burst (load average beside)."""
    services_up(settings)
    main(settings, letters, n_sites, requests, parallel, against)
