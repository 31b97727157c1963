"""``vreserve demo``: the main job, end to end, on the real services.

services up -> its own database and topics -> a registry of a few hundred sites over the city grid
-> sensor fleet, bridge, stream worker, dispatcher, HTTP API and a logistics company on webhooks
running (as `vreserve` subprocesses) -> the virtual warehouse fills from live readings -> the
Wuhan-like scenario declared as an emergency -> each period re-planned from live stock, orders
flowing and delivered, picked stock falling at the sites -> the emergency ended -> final report
(JSON + PNG). Every subprocess is stopped at the end, also on Ctrl-C or an error.

The demo runs in a database of its own (``vreserve_demo``, recreated every run) and under a topic
prefix of its own (``demo<run>.``; older demo topics are deleted at the start), so it never mixes
with tests or other work on the same services. The phases are in ``demo/run.py``.
"""
from __future__ import annotations

import click

from vreserve.settings import Settings


@click.command("demo")
@click.option("--sites", type=click.IntRange(10, 5000), default=300, show_default=True,
              help="Sites in the generated registry.")
@click.option("--region", default="wuhan", show_default=True)
@click.option("--scenario", default="wuhan", show_default=True, help="Scenario pack (centres and demand).")
@click.option("--periods", type=click.IntRange(1, 10), default=10, show_default=True,
              help="Periods of the pack's horizon to run (the pack's supply is sized for all 10).")
@click.option("--period-length", default="15s", show_default=True)
@click.option("--demand-scale", type=float, default=1.0, show_default=True)
@click.option("--interval", type=float, default=2.0, show_default=True, help="Sites' reading interval, s.")
@click.option("--fail-rate", type=float, default=0.02, show_default=True, help="Share of orders logistics fails.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--stock-from-pack/--city-stock", default=True, show_default=True,
              help="Size the registry's stock of the pack's materials to the pack's own supply (a "
                   "shortage like the source's), or keep the generated city-scale stock.")
@click.option("--max-deliveries", type=click.IntRange(1, None), default=None,
              help="Limited fleet: each distribution centre serves at most N rescue centres per period "
                   "(default: the pack's own limit).")
@click.option("--min-lot", type=click.FloatRange(0, min_open=True), default=None,
              help="Limited fleet: no delivery below Q units (all materials together; default: the pack's "
                   "own minimum lot).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/demo", show_default=True)
@click.option("--quiet", is_flag=True, help="Do not echo the services' own progress lines.")
@click.option("--database", default="vreserve_demo", show_default=True,
              help="Database of the demo (dropped and recreated). With another name than the default, "
                   "earlier demos' topics are left alone (tests run the demo this way).")
@click.pass_obj
def demo(settings: Settings, sites, region, scenario, periods, period_length, demand_scale, interval, fail_rate,
         seed, stock_from_pack, max_deliveries, min_lot, out_dir, quiet, database) -> None:
    """The main job: a full emergency scenario on live services, end to end, with a final report."""
    # lazy: the phases import every stage and their libraries; `vreserve --help` stays fast
    from demo.run import DemoOptions, run_demo

    run_demo(settings, DemoOptions(sites, region, scenario, periods, period_length, demand_scale, interval,
                                   fail_rate, seed, stock_from_pack, out_dir, quiet, database, max_deliveries,
                                   min_lot))


commands = [demo]
