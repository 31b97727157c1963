"""``vreserve simulate logistics``: the simulated logistics system (see simulators/logistics.py)."""
from __future__ import annotations

import signal

import click


@click.command("logistics")
@click.option("--accept", "accept_s", type=float, default=0.5, show_default=True, help="Seconds to accept an order.")
@click.option("--pick", "pick_s", type=float, default=1.5, show_default=True, help="Seconds until goods are picked.")
@click.option("--deliver", "deliver_s", type=float, default=3.0, show_default=True, help="Seconds until delivered.")
@click.option("--jitter", type=float, default=0.3, show_default=True, help="Relative jitter of each delay (0..1).")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of orders that fail (no vehicle), fixed per order id.")
@click.option("--pick-timeout", "pick_timeout_s", type=float, default=10.0, show_default=True,
              help="Seconds a site has to confirm a pick command (vr/v1/sites/<id>/picked) before the order fails.")
@click.option("--group", default=None, help="Consumer group (default: <prefix>logistics).")
@click.pass_obj
def command(settings, accept_s, pick_s, deliver_s, jitter, fail_rate, pick_timeout_s, group) -> None:
    """Consume dispatch orders, report accepted / in_transit / delivered / failed, pick at the sites."""
    from simulators.logistics import LogisticsSimulator, Timing

    sim = LogisticsSimulator(settings, Timing(accept_s, pick_s, deliver_s, jitter, fail_rate, pick_timeout_s), group=group,
                             say=lambda m: print(m, flush=True))
    signal.signal(signal.SIGTERM, sim.stop)
    signal.signal(signal.SIGINT, sim.stop)
    print(f"logistics: consuming {settings.topic('dispatch-orders')} (accept {accept_s:g} s, pick {pick_s:g} s, "
          f"deliver {deliver_s:g} s, fail rate {fail_rate:.0%}, pick timeout {pick_timeout_s:g} s)", flush=True)
    c = sim.run()
    print(f"logistics: stopped; {c.orders} orders, {c.delivered} delivered, {c.failed} failed, "
          f"{c.cancelled} cancelled, {c.picks_sent} pick commands sent, {c.short_picks} short picks, "
          f"{c.pick_timeouts} pick timeouts", flush=True)
