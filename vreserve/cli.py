"""The ``vreserve`` command. Each stage contributes its commands from its own ``cli`` module.

Stage modules import heavy libraries (cvxpy, faust) inside their command functions, so that
``vreserve --help`` stays fast.
"""
from __future__ import annotations

import logging
import sys

import click

from vreserve.plugins import mount
from vreserve.settings import Settings, redact


class SettingsProblem(click.ClickException):
    """A VR_* variable is unknown or malformed: ``Error: ...`` on one line, exit status 2."""

    exit_code = 2

#: Modules that expose ``commands: list[click.Command]``; a stage that is absent is skipped.
STAGE_CLI_MODULES = (
    "deploy.cli",
    "ingest.cli",
    "simulators.cli",
    "stream.cli",
    "optimizer.cli",
    "dispatcher.cli",
    "supervision.cli",
    "supervision.alerts_cli",
    "api.cli",
    "bench.cli",
    "demo.cli",
    "vreserve.quarantine_cli",
    "vreserve.schemas_cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vreserve")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """vreserve: a virtual public reserve of emergency supplies.

    Thousands of owners' storage sites report stock over MQTT; the command centre keeps one live
    virtual warehouse, re-plans dispatch every period in an emergency, and settles with owners
    afterwards. Settings come from VR_* environment variables (see the README); the defaults point
    at the local services started by `vreserve services up`.
    """
    try:
        ctx.obj = Settings.from_env()
    except ValueError as exc:
        # One line, exit status 2, no traceback; the message is already free of secrets.
        raise SettingsProblem(redact(str(exc))) from None
    logging.basicConfig(
        level=ctx.obj.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Client libraries narrate every connection at INFO; the stages say what matters themselves.
    for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


mount(cli, STAGE_CLI_MODULES)


def main() -> None:
    cli(prog_name="vreserve")


if __name__ == "__main__":
    main()
