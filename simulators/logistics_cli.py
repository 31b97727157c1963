"""``vreserve simulate logistics``: the simulated logistics system (see simulators/logistics.py).

Imports inside the functions are lazy on purpose: ``vreserve --help`` imports this module, and
stays fast only if each command's libraries load when the command runs."""
from __future__ import annotations

import signal
from pathlib import Path

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
@click.option("--webhook", "listen", metavar="HOST:PORT", default=None,
              help="Webhook mode: receive orders on this address (port 0: any free one) instead of the topic, "
                   "and post statuses through the HTTP API.")
@click.option("--api", "api_url", default=None, help="Webhook mode: the API's base URL (default http://VR_HTTP_ADDR).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Webhook mode: file holding the carrier's API token (`vreserve tokens issue --carrier ID`).")
@click.option("--public-url", default=None, help="Webhook mode: URL to register if not http://HOST:PORT/orders.")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Webhook mode: the carrier's journal of the orders it took, so that a restart resumes them "
                   "and takes none twice (default VR_STATE_DIR/logistics-webhook/orders.jsonl).")
@click.pass_obj
def command(settings, accept_s, pick_s, deliver_s, jitter, fail_rate, pick_timeout_s, group, listen, api_url,
            token_file, public_url, journal) -> None:
    """Take dispatch orders, report accepted / in_transit / delivered / failed, pick at the sites.

    From the dispatch-orders topic to the order-status topic (default), or, with --webhook, as a
    carrier without Kafka: orders POSTed to its receiver, statuses posted through the API."""
    from simulators.logistics import LogisticsSimulator, Timing
    from simulators.logistics_journal import JournalError

    webhook = _webhook_config(settings, listen, api_url, token_file, public_url, journal)
    sim = LogisticsSimulator(settings, Timing(accept_s, pick_s, deliver_s, jitter, fail_rate, pick_timeout_s), group=group,
                             say=lambda m: print(m, flush=True), webhook=webhook)
    signal.signal(signal.SIGTERM, sim.stop)
    signal.signal(signal.SIGINT, sim.stop)
    timing = (f"accept {accept_s:g} s, pick {pick_s:g} s, deliver {deliver_s:g} s, fail rate {fail_rate:.0%}, "
              f"pick timeout {pick_timeout_s:g} s")
    if webhook is None:
        print(f"logistics: consuming {settings.topic('dispatch-orders')} ({timing})", flush=True)
    else:
        print(f"logistics: webhook mode, receiving on {listen}, statuses to {webhook.api_url}, journal "
              f"{webhook.journal} ({timing})", flush=True)
    try:
        c = sim.run()
    except JournalError as exc:
        raise click.ClickException(str(exc)) from None
    print(f"logistics: stopped; {c.orders} orders, {c.delivered} delivered, {c.failed} failed, "
          f"{c.cancelled} cancelled, {c.picks_sent} pick commands sent, {c.short_picks} short picks, "
          f"{c.pick_timeouts} pick timeouts", flush=True)


def _webhook_config(settings, listen: str | None, api_url: str | None, token_file: Path | None,
                    public_url: str | None, journal: Path | None):
    """The webhook mode's settings, or None for the Kafka mode; the token comes from a file (never argv)."""
    from simulators.logistics_webhook import WebhookConfig

    if listen is None:
        if token_file or api_url or public_url or journal:
            raise click.UsageError("--api, --token-file, --public-url and --journal belong to --webhook HOST:PORT")
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"want HOST:PORT, got {listen!r}", param_hint="--webhook")
    if token_file is None:
        raise click.UsageError("--webhook needs --token-file (the carrier's API token)")
    token = token_file.read_text().strip()
    if not token:
        raise click.UsageError(f"{token_file} is empty")
    return WebhookConfig(host, int(port), (api_url or f"http://{settings.http_addr}").rstrip("/"), token, public_url,
                         journal or settings.state_dir / "logistics-webhook" / "orders.jsonl")
