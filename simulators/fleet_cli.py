"""``vreserve simulate sites``: run the simulated site fleet in the foreground with live progress.

Imports inside the command functions are lazy on purpose: every stage's CLI module is imported by
``vreserve --help``, which stays fast only if the stage's libraries load when a command runs.
"""
from __future__ import annotations

import signal
import sys

import click

from vreserve.settings import Settings


@click.command("sites")
@click.option("--registry", "registry_path", type=click.Path(exists=True, dir_okay=False),
              help="Registry YAML (see `vreserve registry generate`).")
@click.option("--generate", "generate_n", type=int, default=None,
              help="Instead of --registry: generate N sites in memory (same as `registry generate`, same seed -> same sites).")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of --generate.")
@click.option("--id-prefix", default=None, help="Site id prefix of --generate.")
@click.option("--materials-per-site", default=None, type=int, help="--generate: every site holds the first N materials.")
@click.option("--interval", "interval_s", default=10.0, show_default=True, type=float, help="Seconds between a site's readings.")
@click.option("--jitter", default=0.1, show_default=True, type=float, help="Relative jitter of the interval (0.1 = +-10 %).")
@click.option("--faults", default="none", show_default=True,
              help="'none', 'all', or e.g. 'duplicates=0.01,out_of_order=0.01,malformed=0.005,disconnect=0.001,stuck=0.01,spike=0.005'.")
@click.option("--auth", type=click.Choice(["per-site", "gateway"]), default="per-site", show_default=True,
              help="per-site: each site logs in as itself (ACL-confined); gateway: a few service connections publish for many sites.")
@click.option("--gateways", default=4, show_default=True, type=int, help="Connections in gateway mode.")
@click.option("--credentials", "credentials_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Per-site passwords (from `registry load --mqtt-credentials`); default: provision new ones in the local Mosquitto.")
@click.option("--shard", default="0/1", show_default=True, help="i/n: simulate only every n-th site starting at i (several processes).")
@click.option("--limit", default=None, type=int, help="Simulate only the first N sites (of this shard).")
@click.option("--duration", default=None, type=float, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM).")
@click.option("--end-sessions-on-stop", is_flag=True,
              help="On stop, delete the sites' persistent MQTT sessions (throw-away fleets: demos, tests).")
@click.option("--progress-every", default=5.0, show_default=True, type=float, help="Seconds between progress lines.")
@click.pass_obj
def command(settings: Settings, registry_path: str | None, generate_n: int | None, seed: int, id_prefix: str | None,
            materials_per_site: int | None, interval_s: float, jitter: float, faults: str, auth: str, gateways: int,
            credentials_path: str | None, shard: str, limit: int | None, duration: float | None, end_sessions_on_stop: bool,
            progress_every: float) -> None:
    """Simulate many sites in one process, publishing stock readings over MQTT (QoS 1)."""
    from vreserve.registry import RegistryError, load_registry
    from vreserve.registry_generate import generate_registry
    from simulators.fleet import Faults, Fleet

    if (registry_path is None) == (generate_n is None):
        raise click.UsageError("give exactly one of --registry FILE or --generate N")
    try:
        reg = load_registry(registry_path) if registry_path else generate_registry(
            generate_n, seed=seed, id_prefix=id_prefix, materials_per_site=materials_per_site)
        fault_cfg = Faults.parse(faults)
    except (RegistryError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        i, n = (int(x) for x in shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise click.UsageError("--shard must be i/n with 0 <= i < n") from None
    site_ids = [s for k, s in enumerate(reg.sites) if k % n == i][:limit]
    credentials = None
    if credentials_path:
        from vreserve.site_credentials import read_credentials

        credentials = read_credentials(credentials_path)
    fleet = Fleet(settings, reg, interval_s, faults=fault_cfg, jitter=jitter, auth=auth, gateways=gateways,
                  credentials=credentials, site_ids=site_ids, seed=seed * 1000 + i)
    signal.signal(signal.SIGTERM, lambda *_: fleet.request_stop())
    offered = len(site_ids) / interval_s
    click.echo(f"fleet: {len(site_ids)} sites ({auth}), one reading every {interval_s:g} s -> "
               f"{offered:.0f} msgs/s offered, faults: {faults}")

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    try:
        fleet.run(duration, progress=echo, progress_every_s=progress_every, end_sessions=end_sessions_on_stop)
    except KeyboardInterrupt:
        pass  # run() stopped the fleet on its way out
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
