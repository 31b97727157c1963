"""The demo's logistics company as a carrier without Kafka (issue 14): it is registered with the
regions of the emergency, gets an API token (kept in a 0600 file, never on the screen, in argv or
in a log), runs its webhook receiver (`vreserve simulate logistics --webhook`), which registers
itself with the API, and `vreserve carrier-webhooks run` POSTs it every order, supersede and cancel
of the dispatch-orders topic; its statuses come back through `POST /api/v1/orders/{id}/status`."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import httpx

from vreserve import identity as ident
from vreserve.db import connect

CARRIER_ID = "demo-carrier"


def provision(dsn: str, out: Path, region: str, days: float = 2.0) -> Path:
    """The carrier for ``region`` and its token in ``out/carrier-token.txt`` (0600); returns the path.

    A demo run is a new world, so the carrier's journal of an earlier run in ``out`` is removed; within
    the run a restarted carrier resumes from it (``journal_path``)."""

    with connect(dsn, autocommit=True) as conn:
        ident.add_carrier(conn, CARRIER_ID, "Demo logistics company (simulated)", [region])
        token = ident.issue_token(conn, "carrier", CARRIER_ID, datetime.now(timezone.utc) + timedelta(days=days),
                                  "demo")[1]
    journal_path(out).unlink(missing_ok=True)
    path = out / "carrier-token.txt"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return path


def wait_for_api(stack, api_addr: str, timeout_s: float = 60.0) -> None:
    """The carrier registers its webhook through the API at start: the API must answer first."""
    deadline = time.monotonic() + timeout_s
    while True:
        stack.check_alive()
        try:
            if httpx.get(f"http://{api_addr}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"the API at http://{api_addr} did not answer within {timeout_s:g} s")
        time.sleep(0.3)


def journal_path(out: Path) -> Path:
    """The carrier's journal of the orders it took (its own state, simulators/logistics_journal.py)."""
    return out / "carrier-state" / "orders.jsonl"


def start(stack, api_addr: str, token_file: Path, timing: list[str]) -> None:
    """The webhook delivery service and the carrier's receiver (``timing``: its --accept/--pick... options)."""
    stack.start("webhooks", "carrier-webhooks", "run")
    stack.start("logistics", "simulate", "logistics", "--webhook", "127.0.0.1:0", "--api", f"http://{api_addr}",
                "--token-file", str(token_file), "--journal", str(journal_path(token_file.parent)), *timing)
    stack.wait_line("logistics", "registered with", 60)
