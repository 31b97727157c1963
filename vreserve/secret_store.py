"""Per-installation secrets kept as 0600 files in the state folder (never in code, argv or logs).

The runner generates them on first start; settings read them when no secret is given in the
environment. One file per account: ``<state_dir>/secrets/<name>.secret``.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def secrets_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "secrets"


def secret_path(state_dir: Path, name: str) -> Path:
    return secrets_dir(state_dir) / f"{name}.secret"


def read_secret(path: Path) -> str | None:
    """The secret in ``path``, or None when it does not exist (yet)."""
    try:
        value = Path(path).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def ensure_secret(path: Path, nbytes: int = 24) -> str:
    """Read the secret, creating a random one first (0600 file, 0700 folder) if it is missing."""
    path = Path(path)
    found = read_secret(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    value = secrets.token_urlsafe(nbytes)
    # O_EXCL: two processes creating at once must not end with different secrets in use.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path) or value
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def replace_secret(path: Path, nbytes: int = 24) -> str:
    """Write a new random secret to ``path`` and return it."""
    value = new_secret(nbytes)
    write_secret(path, value)
    return value


def write_secret(path: Path, value: str) -> None:
    """Replace the secret in ``path`` (0600 from the first byte, atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    tmp.replace(path)
