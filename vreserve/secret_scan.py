"""Look for the installation's generated secrets in log files: proof, not assumption, that no
secret reaches a log (services' logs, components' logs, a demo's or a test run's logs)."""
from __future__ import annotations

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
    """Secret file name -> value, for every ``*.secret`` file in ``secrets_dir``."""
    found = {}
    for path in sorted(Path(secrets_dir).glob("*.secret")):
        value = path.read_text(errors="replace").strip()
        if len(value) >= MIN_SECRET_CHARS:
            found[path.name] = value
    return found


def log_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``*.log`` file below the given folders (missing folders are skipped)."""
    return sorted({p for root in roots if Path(root).is_dir() for p in Path(root).rglob("*.log") if p.is_file()})


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
