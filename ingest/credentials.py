"""Per-site MQTT credentials: the MQTT user name is the site id, the password a random secret.

Mosquitto's ACL (deploy/mosquitto/acl) lets a user named like a site publish only to
``vr/v1/sites/<its id>/stock|status`` and read ``.../commands/#``. This module adds the users to the
local runner's password file and reloads Mosquitto (SIGHUP, clients stay connected). A real
deployment provisions the same file with its own secrets.
"""
from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

from vreserve.settings import Settings


def _mosquitto(settings: Settings):
    from deploy.runner import Mosquitto

    return Mosquitto(settings)


@contextlib.contextmanager
def _passwd_lock(passwd: Path):
    """Serialise this module's writers of the shared password file (processes on this machine).

    ``mosquitto_passwd`` rewrites the file in place: a remover that read it in the middle of that
    saw a truncated file and wrote it back without the users it missed - once, the service
    account itself, which locked every service out of the broker.
    """
    import fcntl

    with open(Path(passwd).with_name(Path(passwd).name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _keep_service_user(broker) -> None:
    """Re-add the service account if a concurrent writer lost it (never leave the services locked out)."""
    from deploy.runner import add_mqtt_users

    if broker.username and broker.username not in _users(broker.passwd):
        add_mqtt_users(broker.passwd, {broker.username: broker.password})


def provision_site_credentials(
    settings: Settings, site_ids: Iterable[str], progress: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Create (or replace) a password for every site in the local Mosquitto; returns site -> password.

    The password file is shared: another process adding users at the same moment can overwrite our
    additions (``mosquitto_passwd`` reads, modifies and rewrites the file). So after adding we read
    the file back and add again whatever went missing, before reloading Mosquitto.
    """
    from deploy.runner import add_mqtt_users

    broker = _mosquitto(settings)
    creds = {site_id: secrets.token_urlsafe(12) for site_id in site_ids}
    missing = dict(creds)
    for attempt in range(5):
        items = list(missing.items())
        for start in range(0, len(items), 200):
            with _passwd_lock(broker.passwd):
                add_mqtt_users(broker.passwd, dict(items[start:start + 200]))
            if progress and len(items) > 200:
                progress(f"mqtt credentials: {min(start + 200, len(items))}/{len(items)} sites")
        with _passwd_lock(broker.passwd):
            _keep_service_user(broker)
            present = _users(broker.passwd)
        missing = {u: p for u, p in creds.items() if u not in present}
        if not missing:
            break
        if progress:
            progress(f"mqtt credentials: {len(missing)} lost to a concurrent writer, adding again")
    if missing:
        raise RuntimeError(f"could not keep {len(missing)} site users in {broker.passwd} (concurrent writers?)")
    broker.reload()
    if creds:
        _wait_accepted(settings, *list(creds.items())[-1])
    return creds


def remove_site_credentials(settings: Settings, site_ids: Iterable[str]) -> None:
    """Delete site users from the local password file (test clean-up) and reload Mosquitto.

    One read and one atomic rename for all users keeps the window in which a concurrent writer's
    change could be lost as short as possible.
    """
    broker = _mosquitto(settings)
    drop = set(site_ids) - {broker.username}
    path = Path(broker.passwd)
    with _passwd_lock(path):
        lines = path.read_text().splitlines(keepends=True)
        kept = [ln for ln in lines if ln.split(":", 1)[0] not in drop]
        if len(kept) != len(lines):
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_text("".join(kept))
            tmp.chmod(path.stat().st_mode & 0o777)
            tmp.replace(path)
        _keep_service_user(broker)
    broker.reload()


def _users(passwd: Path) -> set[str]:
    try:
        return {ln.split(":", 1)[0] for ln in Path(passwd).read_text().splitlines() if ":" in ln}
    except OSError:
        return set()


def _wait_accepted(settings: Settings, user: str, password: str, timeout: float = 10.0) -> None:
    """Mosquitto re-reads the password file asynchronously after SIGHUP: wait until it took effect."""
    import paho.mqtt.client as mqtt

    addr = settings.mqtt
    deadline = time.monotonic() + timeout
    while True:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"vr-credcheck-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(user, password)
        result: dict = {}
        client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", rc)
        try:
            client.connect(addr.host, addr.port, keepalive=5)
            t0 = time.monotonic()
            while "rc" not in result and time.monotonic() - t0 < 2:
                client.loop(0.05)
        finally:
            client.disconnect()
        rc = result.get("rc")
        if rc is not None and not rc.is_failure:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Mosquitto did not accept the new credentials of {user} within {timeout:.0f} s ({rc})")
        time.sleep(0.3)
        # Mosquitto handles SIGHUP with a flag: a second SIGHUP that lands while it is reloading
        # for an earlier one is lost, so ask again until the new user is accepted.
        _mosquitto(settings).reload()


def write_credentials(creds: dict[str, str], path: str | Path) -> None:
    import yaml

    p = Path(path)
    p.write_text(yaml.safe_dump({"mqtt_credentials": creds}, sort_keys=True))
    p.chmod(0o600)


def read_credentials(path: str | Path) -> dict[str, str]:
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    creds = doc.get("mqtt_credentials")
    if not isinstance(creds, dict):
        raise ValueError(f"{path}: expected a mapping 'mqtt_credentials: {{site_id: password}}'")
    return {str(k): str(v) for k, v in creds.items()}
