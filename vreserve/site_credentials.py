"""Per-site MQTT credentials: the MQTT user name is the site id, the password a random secret.

Sites are added to and removed from Mosquitto's dynamic-security plugin through its control topic
(``$CONTROL/dynamic-security/v1``), logged in as the broker's admin account: each site gets a client
and its own role (``vreserve.mqtt_access``), which lets it publish only its own stock / status /
picked topics and subscribe only to its own commands; every other SUBSCRIBE is refused. A change is
in effect when the plugin answers: no password file, no SIGHUP, no waiting for a reload.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Iterable

import yaml

from vreserve.mqtt import BrokerError, control
from vreserve.mqtt_access import (add_site_commands, check_site_id, remove_site_commands, site_logins, site_of_login,
                                   site_role, update_site_commands)
from vreserve.settings import Settings

#: Sites per control message (three or four commands each; well under Mosquitto's packet limit).
SITES_PER_BATCH = 100
#: Answers that mean "already there" or "already gone": expected when re-provisioning or cleaning up.
_BENIGN = ("already exists", "already has role", "not found")


def provision_site_credentials(
    settings: Settings, site_ids: Iterable[str], progress: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Create (or replace) a password for every site in the broker; returns site -> password.

    A site that already exists gets the new password and its role again; the plugin disconnects
    it (Mosquitto 2.0.x kicks a client whose password changes), so it logs in again with the new one.
    """
    site_ids = list(dict.fromkeys(site_ids))
    for site_id in site_ids:
        check_site_id(site_id)
    creds = {site_id: secrets.token_urlsafe(16) for site_id in site_ids}
    admin = settings.mqtt_admin
    done = 0
    for start in range(0, len(site_ids), SITES_PER_BATCH):
        chunk = site_ids[start:start + SITES_PER_BATCH]
        commands = [c for s in chunk for c in add_site_commands(s, creds[s])]
        responses = control(admin, commands, batch=len(commands))
        existing = [c["username"] for c, r in zip(commands, responses)
                    if c["command"] == "createClient" and "already exists" in str(r.get("error", ""))]
        _raise_unexpected(commands, responses)
        if existing:
            updates = [c for s in existing for c in update_site_commands(s, creds[s])]
            _raise_unexpected(updates, control(admin, updates, batch=len(updates)))
        done += len(chunk)
        if progress and len(site_ids) > SITES_PER_BATCH:
            progress(f"mqtt credentials: {done}/{len(site_ids)} sites")
    return creds


def remove_site_credentials(settings: Settings, site_ids: Iterable[str]) -> None:
    """Delete sites' clients and roles (disconnects them); sites already gone are fine."""
    commands = [c for s in dict.fromkeys(site_ids) for c in remove_site_commands(s)]
    if commands:
        _raise_unexpected(commands, control(settings.mqtt_admin, commands))


def site_logins_present(settings: Settings, site_id: str) -> list[str]:
    """Which of the site's two logins exist in the broker."""
    logins = site_logins(site_id)
    answers = control(settings.mqtt_admin, [{"command": "getClient", "username": u} for u in logins])
    return [u for u, a in zip(logins, answers) if not a.get("error")]


def begin_site_rotation(settings: Settings, site_id: str) -> tuple[str, str]:
    """Hitless rotation, first step: the site's other login (``SITE`` or ``SITE/2``) is created with
    a new password and the site's role; the current login, and the device's open connection on it,
    are not touched (the plugin disconnects a client whose password changes, so changing the
    current one would cut the site off). Returns (login, password). The device switches to the new
    login at its pace; :func:`retire_site_login` then ends the overlap."""
    present = site_logins_present(settings, site_id)
    if not present:
        raise ValueError(f"site {site_id!r} has no login yet: create it with `vreserve ingest site-secret`")
    if len(present) == 2:
        raise ValueError(f"site {site_id!r} already has two logins (a rotation is open): retire one first "
                         f"(`vreserve ingest site-retire-login LOGIN`)")
    login = next(u for u in site_logins(site_id) if u not in present)
    password = secrets.token_urlsafe(16)
    command = {"command": "createClient", "username": login, "password": password,
               "roles": [{"rolename": site_role(site_id)}]}
    answer = control(settings.mqtt_admin, [command])
    if answer[0].get("error"):
        raise BrokerError(f"broker refused createClient for {login!r}: {answer[0]['error']}")
    return login, password


def retire_site_login(settings: Settings, login: str) -> None:
    """End a rotation's overlap: delete one login of a site (the plugin ends its connection). The
    site's last login is refused: that is `site-remove`."""
    site_id = site_of_login(login)
    present = site_logins_present(settings, site_id)
    if login not in present:
        raise ValueError(f"no MQTT login {login!r}")
    if len(present) < 2:
        raise ValueError(f"{login!r} is the site's only login; remove the site with `vreserve ingest site-remove`")
    answer = control(settings.mqtt_admin, [{"command": "deleteClient", "username": login}])
    if answer[0].get("error"):
        raise BrokerError(f"broker refused deleteClient for {login!r}: {answer[0]['error']}")


def _raise_unexpected(commands: list[dict], responses: list[dict]) -> None:
    """Fail on any error other than the benign ones (names the command and user, never a password)."""
    for command, response in zip(commands, responses):
        error = str(response.get("error") or "")
        if error and not any(b in error.lower() for b in _BENIGN):
            who = command.get("username") or command.get("rolename")
            raise BrokerError(f"broker refused {command['command']} for {who!r}: {error}")


def write_credentials(creds: dict[str, str], path: str | Path) -> None:
    """Site passwords to a YAML file that is 0600 from its first byte (replaced atomically)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump({"mqtt_credentials": creds}, sort_keys=True))
    tmp.replace(p)


def write_login(site_id: str, login: str, password: str, path: str | Path) -> None:
    """A rotation's new login for a device (0600 from the first byte, replaced atomically). Its own
    key, ``mqtt_login``, so no reader of site -> password files mistakes it for one."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump({"mqtt_login": {"site": site_id, "username": login, "password": password}}))
    tmp.replace(p)


def read_credentials(path: str | Path) -> dict[str, str]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    creds = doc.get("mqtt_credentials")
    if not isinstance(creds, dict):
        raise ValueError(f"{path}: expected a mapping 'mqtt_credentials: {{site_id: password}}'")
    return {str(k): str(v) for k, v in creds.items()}
