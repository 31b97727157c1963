"""Look for the installation's generated secrets in log files: proof, not assumption, that no
secret reaches a log (services' logs, components' logs, a demo's or a test run's logs)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: Secrets shorter than this are not searched for (a short value would match by chance).
MIN_SECRET_CHARS = 12
#: Log files larger than this are read in their first part only, bytes.
MAX_LOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Leak:
    """A secret (by its file's name, never its value) found in a log file."""

    log: Path
    secret: str


def known_secrets(secrets_dir: Path) -> dict[str, str]:
    """Secret name -> value, for every secret kept in ``secrets_dir``: each ``*.secret`` file, a
    rotation's pending ``*.secret.next``, and every password in libpq's password files (``pgpass``
    and the database roles' ``pgpass-<role>``, named ``<file>:<role>``), which normally repeat the
    ``pg-<role>.secret`` values but are what the components actually read."""
    from vreserve.pg_secrets import passfile_entries

    found = {}
    folder = Path(secrets_dir)
    for path in sorted([*folder.glob("*.secret"), *folder.glob("*.secret.next")]):
        value = path.read_text(errors="replace").strip()
        if len(value) >= MIN_SECRET_CHARS:
            found[path.name] = value
    for path in sorted(folder.glob("pgpass*")):
        if path.name.endswith(".tmp"):
            continue
        for role, value in passfile_entries(path.read_text(errors="replace")):
            if len(value) >= MIN_SECRET_CHARS:
                found[f"{path.name}:{role}"] = value
    return found


def remember(earlier: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """``now`` plus every value of ``earlier`` that is no longer current (a secret rotated
    meanwhile), named ``<name> (before rotation)``: a log written before a rotation may hold the
    old value, which no file holds any more."""
    current = set(now.values())
    merged = dict(now)
    for name, value in earlier.items():
        if value not in current:
            merged[f"{name} (before rotation)"] = value
    return merged


def log_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``*.log`` file below the given folders. Missing folders, and folders that vanish while
    they are walked (a Kafka topic being deleted), are skipped: the scan must not fail on a race."""
    found = set()
    for root in roots:
        for folder, _dirs, files in os.walk(root, onerror=lambda _exc: None):
            found.update(Path(folder) / name for name in files if name.endswith(".log"))
    return sorted(found)


def scan(secrets: dict[str, str], logs: Iterable[Path]) -> list[Leak]:
    """Each (log, secret name) where the secret's value occurs in the log."""
    leaks = []
    needles = {name: value.encode() for name, value in secrets.items()}
    for log in logs:
        try:
            with open(log, "rb") as f:
                data = f.read(MAX_LOG_BYTES)
        except OSError:
            continue
        leaks += [Leak(log, name) for name, value in needles.items() if value in data]
    return leaks
