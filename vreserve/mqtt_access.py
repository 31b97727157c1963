"""Who may do what on the MQTT broker: Mosquitto's dynamic-security roles, as pure data.

Mosquitto's dynamic-security plugin denies by default and checks every SUBSCRIBE against explicit
rules, so a site's credentials can subscribe to nothing but its own command topics. That closes the
hole where a site joined the bridge's shared group (``$share/vr-bridge/...``) and made Mosquitto drop
about half of every other site's readings. Three kinds of accounts:

* ``vr-service`` (bridge, stream tools, simulators' gateways, tests): reads and writes ``vr/...`` and
  may join shared subscriptions; nothing under ``$CONTROL`` or ``$SYS``.
* ``vr-admin``: talks only to the plugin's control topic, to add and remove sites.
* one client and one role per site (``site:<id>``): publish its own stock / status / picked, read its
  own commands. Mosquitto 2.0's plugin has no ``%u`` patterns, hence a role per site with literal
  topics (the plugin keeps them in hash tables; thousands are fine).

This module builds the plugin's JSON (initial config file) and control commands; the runner and
``vreserve.site_credentials`` do the I/O.
"""
from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from vreserve import topics

SERVICE_USER = "vr-service"
ADMIN_USER = "vr-admin"
SERVICE_ROLE = "vr-service"
ADMIN_ROLE = "vr-admin"
SITE_ROLE_PREFIX = "site:"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
#: PBKDF2-SHA512 rounds; Mosquitto's own default (mosquitto_ctrl) for the config file's hashes.
PBKDF2_ITERATIONS = 101
#: Deny everything that no role allows (unsubscribing is harmless and always allowed).
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
#: Characters that would make a site id a wildcard or another topic level in its ACL topics.
_FORBIDDEN_IN_SITE_ID = set("+#/$\x00")


def _acl(kind: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": allow}


def site_role(site_id: str) -> str:
    """The role that holds one site's rules (named after the site, one role per site)."""
    return f"{SITE_ROLE_PREFIX}{site_id}"


def check_site_id(site_id: str) -> None:
    """A site id becomes a topic level in literal ACL topics: it may hold no wildcard or '/'."""
    if not site_id or _FORBIDDEN_IN_SITE_ID & set(site_id):
        raise ValueError(f"site id {site_id!r} cannot be an MQTT user (empty, or holds one of + # / $ NUL)")
    if site_id in (SERVICE_USER, ADMIN_USER):
        raise ValueError(f"site id {site_id!r} is reserved for the broker's own accounts")


def site_acls(site_id: str) -> list[dict[str, Any]]:
    """Publish own stock/status/picked; subscribe to and receive own commands; nothing else."""
    check_site_id(site_id)
    commands = topics.MQTT_PICK.format(site_id=site_id).rsplit("/", 1)[0] + "/#"
    return [
        _acl("publishClientSend", topics.MQTT_STOCK.format(site_id=site_id)),
        _acl("publishClientSend", topics.MQTT_STATUS.format(site_id=site_id)),
        _acl("publishClientSend", topics.MQTT_PICKED.format(site_id=site_id)),
        _acl("subscribePattern", commands),
        _acl("publishClientReceive", commands),
    ]


def service_acls() -> list[dict[str, Any]]:
    """Everything on ordinary topics plus shared subscriptions (the bridge's group)."""
    return [
        _acl("publishClientSend", "#"),
        _acl("publishClientReceive", "#"),
        _acl("subscribePattern", "#"),
        _acl("subscribePattern", "$share/#"),
    ]


def admin_acls() -> list[dict[str, Any]]:
    """Only the plugin's control topic: provisioning needs nothing else."""
    control = "$CONTROL/dynamic-security/#"
    return [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
    ]


def password_fields(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The config file's hashed password (PBKDF2-SHA512, 12-byte salt, as the plugin stores it)."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


def password_matches(client: dict[str, Any], password: str) -> bool:
    """Whether a config-file client entry already holds this password (keeps a stable file)."""
    try:
        salt = base64.b64decode(client["salt"])
        want = base64.b64decode(client["password"])
        rounds = int(client["iterations"])
    except (KeyError, ValueError, TypeError):
        return False
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds, 64) == want


def render_config(
    existing: dict[str, Any] | None, service_user: str, service_password: str, admin_password: str
) -> dict[str, Any]:
    """The plugin's config file before a broker start: our roles and accounts as the code says.

    Sites the broker added at run time (clients and ``site:`` roles) are kept; the service and admin
    accounts, their roles and the default access are rewritten, so a rule change always applies.
    """
    existing = existing or {}
    own_roles = {SERVICE_ROLE, ADMIN_ROLE}
    own_users = {service_user, ADMIN_USER}
    roles = [r for r in existing.get("roles", []) if r.get("rolename") not in own_roles]
    roles += [
        {"rolename": SERVICE_ROLE, "acls": service_acls()},
        {"rolename": ADMIN_ROLE, "acls": admin_acls()},
    ]
    old = {c.get("username"): c for c in existing.get("clients", [])}
    clients = [c for c in existing.get("clients", []) if c.get("username") not in own_users]
    for user, password, role in ((service_user, service_password, SERVICE_ROLE),
                                 (ADMIN_USER, admin_password, ADMIN_ROLE)):
        prev = old.get(user)
        hashed = ({k: prev[k] for k in ("password", "salt", "iterations")}
                  if prev and password_matches(prev, password) else password_fields(password))
        clients.append({"username": user, **hashed, "roles": [{"rolename": role}]})
    return {
        "clients": clients,
        "groups": existing.get("groups", []),
        "roles": roles,
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
    }


def add_site_commands(site_id: str, password: str) -> list[dict[str, Any]]:
    """Control commands that create a site's role and client (errors if they exist are expected)."""
    return [
        {"command": "createRole", "rolename": site_role(site_id), "acls": site_acls(site_id)},
        {"command": "createClient", "username": site_id, "password": password,
         "roles": [{"rolename": site_role(site_id)}]},
    ]


def update_site_commands(site_id: str, password: str) -> list[dict[str, Any]]:
    """For a site that already exists: new password, and its role (again) in case it was lost."""
    return [
        {"command": "modifyClient", "username": site_id, "password": password,
         "roles": [{"rolename": site_role(site_id)}]},
    ]


#: A site's second login, used during a hitless rotation. A site id never holds '/', so this name
#: can be no other site's login.
SECOND_LOGIN_SUFFIX = "/2"


def site_logins(site_id: str) -> tuple[str, str]:
    """The two logins a site may have: its id, and its id with the second-login suffix. Both carry
    the site's role, so both may do exactly what the site may do."""
    check_site_id(site_id)
    return site_id, site_id + SECOND_LOGIN_SUFFIX


def site_of_login(username: str) -> str:
    """The site a login belongs to (its id without the second-login suffix)."""
    return username.removesuffix(SECOND_LOGIN_SUFFIX)


def remove_site_commands(site_id: str) -> list[dict[str, Any]]:
    """Delete a site's clients, both logins (which also disconnects them), and its role."""
    return [
        *({"command": "deleteClient", "username": login} for login in site_logins(site_id)),
        {"command": "deleteRole", "rolename": site_role(site_id)},
    ]
