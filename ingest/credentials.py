"""Per-site MQTT credentials: the MQTT user name is the site id, the password a random secret.

Mosquitto's ACL (deploy/mosquitto/acl) lets a user named like a site publish only to
``vr/v1/sites/<its id>/stock|status`` and read ``.../commands/#``. This module adds the users to the
local runner's password file and reloads Mosquitto (SIGHUP, clients stay connected). A real
deployment provisions the same file with its own secrets.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

from vreserve.settings import Settings


def _mosquitto(settings: Settings):
    from deploy.runner import Mosquitto

    return Mosquitto(settings)


def provision_site_credentials(
    settings: Settings, site_ids: Iterable[str], progress: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Create (or replace) a password for every site in the local Mosquitto; returns site -> password."""
    from deploy.runner import add_mqtt_users

    broker = _mosquitto(settings)
    creds = {site_id: secrets.token_urlsafe(12) for site_id in site_ids}
    items = list(creds.items())
    for start in range(0, len(items), 200):
        add_mqtt_users(broker.passwd, dict(items[start:start + 200]))
        if progress and len(items) > 200:
            progress(f"mqtt credentials: {min(start + 200, len(items))}/{len(items)} sites")
    broker.reload()
    if items:
        _wait_accepted(settings, *items[-1])
    return creds


def remove_site_credentials(settings: Settings, site_ids: Iterable[str]) -> None:
    """Delete site users from the local password file (test clean-up) and reload Mosquitto."""
    broker = _mosquitto(settings)
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for site_id in site_ids:
        subprocess.run([tool, "-D", str(broker.passwd), site_id], capture_output=True)
    broker.reload()


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
        time.sleep(0.2)


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
