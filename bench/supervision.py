"""``vreserve bench supervision``: settlement, assessment, audits and grid at city scale.

Builds a private database (dropped at the end): a generated registry of N sites (ingest's
generator, one contract per site and material), a latest reading for every contracted pair, one
emergency with M supply orders and their status records. Then times, on that data:

- settle, first run (compute + store the statement) and second run (no change: nothing issued);
- settle after late status records (an ADJUSTMENT version);
- assess (facts, ranking and the PNG chart);
- audit plan over every site; audit recording throughput (records/s, one transaction each);
- the grid view.

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs.
"""
from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from bench.procs import services_up
from vreserve.tables import seconds, table
from vreserve.settings import Settings


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def main(settings: Settings, sites: int = 10_000, orders: int = 20_000, audits: int = 500, seed: int = 1,
         out_dir: str | Path = "out/bench-supervision") -> dict:
    """Build the private database, time each step on it, print the figures; returns them."""
    # lazy: bench modules are mounted on `vreserve --help`, and psycopg alone costs ~0.5 s to import
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from vreserve.db import connect, migrate

    info = conninfo_to_dict(settings.pg_dsn)
    admin = make_conninfo(**{**info, "dbname": "postgres"})
    dbname = f"vr_bench_sv_{uuid.uuid4().hex[:8]}"
    dsn = make_conninfo(**{**info, "dbname": dbname})
    figures: dict[str, float] = {}
    out = Path(out_dir).resolve()
    with connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    try:
        migrate(dsn)
        rng = random.Random(seed)
        now = datetime.now(timezone.utc)
        with connect(dsn, autocommit=True) as conn:
            pairs, pending = _seed(conn, sites, orders, seed, rng, now)
            _say("[3/4] settlement ...")
            _time_settlement(conn, pending, now, out, figures)
            _say("[4/4] assessment, audit plan, audits, grid ...")
            _time_supervision(conn, settings, audits, seed, now, out, figures)
    finally:
        with connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    _print_figures(figures, sites, len(pairs), orders, len(pending))
    return figures


def _seed(conn, sites: int, orders: int, seed: int, rng: random.Random,
          now: datetime) -> tuple[list[tuple], list[tuple[str, float]]]:
    """The generated city: registry, a reading per contracted pair, one emergency with its supply
    orders and statuses. Returns the (site, material, committed, unit) pairs and the orders left
    without a final status (for the late statuses of the adjustment run)."""
    from vreserve.registry_generate import generate_registry  # lazy: see main
    from vreserve.registry_store import store_registry

    t0 = now - timedelta(hours=6)
    _say(f"[1/4] registry of {sites} sites ...")
    counts = store_registry(conn, generate_registry(sites, seed=seed))
    pairs = conn.execute("SELECT c.site_id, c.material_id, c.committed_qty::float8, m.unit FROM contracts c"
                         " JOIN materials m USING (material_id) ORDER BY 1, 2").fetchall()
    _say(f"      {counts.get('contracts', len(pairs)):,} contracts; readings for every pair ...")
    with conn.cursor() as cur, cur.copy("COPY stock_latest (site_id, material_id, qty, unit, ts, seq) FROM STDIN") as cp:
        for s, m, q, u in pairs:
            cp.write_row((s, m, round(q * rng.uniform(0.6, 1.1), 3), u, now, 1))
    _say(f"[2/4] emergency with {orders:,} supply orders and their status records ...")
    conn.execute("INSERT INTO emergencies (emergency_id, region, declared_at, declared_by, reason, periods,"
                 " period_length_s, demand_source, ended_at) VALUES ('bench', 'wuhan', %s, 'bench', 'bench',"
                 " 6, 3600, 'bench', %s)", (t0, t0 + timedelta(hours=6)))
    conn.execute("INSERT INTO plans (plan_id, emergency_id, period, created_at, status)"
                 " VALUES ('P-bench', 'bench', 1, %s, 'optimal')", (t0,))
    chosen = [pairs[rng.randrange(len(pairs))] for _ in range(orders)]
    return pairs, _seed_orders(conn, chosen, rng, t0)


def _seed_orders(conn, chosen: list[tuple], rng: random.Random, t0: datetime) -> list[tuple[str, float]]:
    """Supply orders at the chosen pairs: 80 % delivered (some short), 10 % failed, 10 % pending."""
    pending: list[tuple[str, float]] = []
    with conn.cursor() as cur:
        with cur.copy("COPY dispatch_orders (order_id, plan_id, emergency_id, period, leg, origin, destination,"
                      " material_id, qty, unit, created_at, status_at) FROM STDIN") as cp:
            for i, (s, m, q, u) in enumerate(chosen):
                created = t0 + timedelta(minutes=rng.randint(0, 300))
                cp.write_row((f"o{i:07d}", "P-bench", "bench", 1, "supply", s, "DC-1", m,
                              max(1, int(q * 0.05)), u, created, created))
        with cur.copy("COPY order_status_events (status_id, order_id, status, at, qty) FROM STDIN") as cp:
            for i, (s, m, q, u) in enumerate(chosen):
                qty = max(1, int(q * 0.05))
                at = t0 + timedelta(minutes=rng.randint(320, 500))
                r = rng.random()
                if r < 0.8:
                    cp.write_row((f"s{i:07d}", f"o{i:07d}", "delivered", at, qty if rng.random() < 0.85 else qty // 2))
                elif r < 0.9:
                    cp.write_row((f"s{i:07d}", f"o{i:07d}", "failed", at, None))
                else:
                    pending.append((f"o{i:07d}", qty))
    return pending


def _time_settlement(conn, pending: list[tuple[str, float]], now: datetime, out: Path, figures: dict) -> None:
    """Settle first (compute + store), again unchanged, then after late statuses (an ADJUSTMENT)."""
    from supervision import settle_run  # lazy: see main
    from vreserve.sql_settlement import settle

    start = time.perf_counter()
    first = settle(conn, "bench", "bench")
    figures["settle_first_s"] = time.perf_counter() - start
    figures["statement_lines"] = len(first.issued.lines)
    start = time.perf_counter()
    again = settle(conn, "bench", "bench")
    figures["settle_unchanged_s"] = time.perf_counter() - start
    assert again.issued is None, "second settlement run issued a new version"
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO order_status_events (status_id, order_id, status, at, qty)"
                        " VALUES (%s, %s, 'delivered', %s, %s)",
                        [(f"late-{oid}", oid, now, qty) for oid, qty in pending])
    start = time.perf_counter()
    adj = settle(conn, "bench", "bench")
    figures["settle_adjustment_s"] = time.perf_counter() - start
    figures["adjustment_lines"] = len(adj.issued.lines) if adj.issued else 0
    start = time.perf_counter()
    settle_run.write_files(adj, out, "CNY")
    figures["settle_files_s"] = time.perf_counter() - start


def _time_supervision(conn, settings: Settings, audits: int, seed: int, now: datetime, out: Path,
                      figures: dict) -> None:
    """Assessment with its chart, the audit plan, audit recording throughput and the grid view."""
    from supervision import grid, sql_audits  # lazy: see main
    from supervision.assessment import chart
    from vreserve import assessment, audit_plan
    from vreserve.sql_assessment import load_site_facts
    from vreserve.schemas.audits import AuditRecord

    start = time.perf_counter()
    facts, _ = load_site_facts(conn, "bench", settings.reading_interval_s)
    ranked, kinds = assessment.assess(facts)
    chart(ranked, kinds, out / "assessment-bench.png", "bench")
    figures["assess_s"] = time.perf_counter() - start
    figures["assessed_sites"] = len(ranked)
    start = time.perf_counter()
    drawn = audit_plan.draw(audit_plan.weigh(sql_audits.site_risks(conn)), 100, seed)
    figures["audit_plan_s"] = time.perf_counter() - start
    targets = [w.risk.site_id for w in drawn]
    stock: dict[str, list] = {}
    for s, m, q in conn.execute("SELECT site_id, material_id, qty::float8 FROM stock_latest WHERE site_id = ANY(%s)",
                                (targets,)):
        stock.setdefault(s, []).append((m, q))
    records = []
    for i in range(audits):
        s = targets[i % len(targets)]
        counts = [{"material": m, "counted_qty": round(q * (0.3 if i % 7 == 0 else 1.0), 3)} for m, q in stock[s]]
        records.append(AuditRecord.from_payload({"v": 1, "audit_id": f"b{i}", "site_id": s, "auditor": "bench",
                                                 "at": now.isoformat(), "counts": counts}))
    start = time.perf_counter()
    for r in records:
        sql_audits.record_audit(conn, r, "bench")
    figures["audit_records_per_s"] = audits / (time.perf_counter() - start)
    start = time.perf_counter()
    grid.render(conn)
    figures["grid_s"] = time.perf_counter() - start


def _print_figures(figures: dict, sites: int, contracts: int, orders: int, late: int) -> None:
    rows = [
        ["settle, first run (compute + store)", seconds(figures["settle_first_s"]),
         f"{figures['statement_lines']:,.0f} statement lines"],
        ["settle, unchanged (nothing issued)", seconds(figures["settle_unchanged_s"]), ""],
        [f"settle, after {late:,} late statuses", seconds(figures["settle_adjustment_s"]),
         f"{figures['adjustment_lines']:,.0f} ADJUSTMENT lines"],
        ["statement CSV + JSON", seconds(figures["settle_files_s"]), ""],
        ["assess + PNG chart", seconds(figures["assess_s"]), f"{figures['assessed_sites']:,.0f} sites ranked"],
        [f"audit plan (100 of {sites:,} sites)", seconds(figures["audit_plan_s"]), ""],
        ["audit records", "", f"{figures['audit_records_per_s']:,.1f} records/s"],
        ["grid view", seconds(figures["grid_s"]), ""],
    ]
    click.echo(table(["step", "time", "figure"], rows,
                     title=f"supervision bench: {sites:,} sites, {contracts:,} contracts, {orders:,} supply orders"))


@click.command("supervision")
@click.option("--sites", default=10_000, show_default=True)
@click.option("--orders", default=20_000, show_default=True, help="Supply orders in the emergency.")
@click.option("--audits", default=500, show_default=True, help="Audit records to apply.")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/bench-supervision",
              show_default=True, help="Folder for the statement files and the chart (relative to the working directory).")
@click.pass_obj
def command(settings: Settings, sites: int, orders: int, audits: int, seed: int, out_dir: str) -> None:
    """Settlement, assessment, audit plan, audit throughput and grid on a generated city (private DB)."""
    services_up(settings)
    main(settings, sites=sites, orders=orders, audits=audits, seed=seed, out_dir=out_dir)
