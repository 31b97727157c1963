"""The broker's rules as data (vreserve.mqtt_access): pure checks, no broker needed."""
from __future__ import annotations

import pytest

from vreserve.mqtt_access import (
    ADMIN_USER,
    DEFAULT_ACL_ACCESS,
    add_site_commands,
    password_fields,
    password_matches,
    render_config,
    site_acls,
)


def test_defaults_deny_everything_but_unsubscribe() -> None:
    assert DEFAULT_ACL_ACCESS == {"publishClientSend": False, "publishClientReceive": False,
                                  "subscribe": False, "unsubscribe": True}


@pytest.mark.parametrize("bad", ["", "+", "a/b", "s#", "$share", "vr-service", ADMIN_USER, "x\x00"])
def test_site_ids_that_would_widen_a_rule_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        site_acls(bad)


def test_a_site_role_names_only_its_own_topics() -> None:
    acls = site_acls("s-1")
    assert all("/s-1/" in a["topic"] and a["allow"] for a in acls)
    assert {a["acltype"] for a in acls} == {"publishClientSend", "subscribePattern", "publishClientReceive"}
    assert [a["topic"] for a in acls if a["acltype"] == "subscribePattern"] == ["vr/v1/sites/s-1/commands/#"]


def test_render_keeps_sites_and_rewrites_own_accounts() -> None:
    first = render_config(None, "vr-service", "pw-a", "adm-a")
    site_client = {"username": "s-1", **password_fields("x"), "roles": [{"rolename": "site:s-1"}]}
    site_role = {"rolename": "site:s-1", "acls": site_acls("s-1")}
    tampered = {**first, "clients": first["clients"] + [site_client], "roles": first["roles"] + [site_role],
                "defaultACLAccess": {k: True for k in DEFAULT_ACL_ACCESS}}
    again = render_config(tampered, "vr-service", "pw-b", "adm-a")
    clients = {c["username"]: c for c in again["clients"]}
    assert set(clients) == {"vr-service", ADMIN_USER, "s-1"}
    assert password_matches(clients["vr-service"], "pw-b") and not password_matches(clients["vr-service"], "pw-a")
    # An unchanged password keeps its hash (the file does not churn on every start).
    assert clients[ADMIN_USER]["salt"] == {c["username"]: c for c in first["clients"]}[ADMIN_USER]["salt"]
    assert again["defaultACLAccess"] == DEFAULT_ACL_ACCESS
    assert [r["rolename"] for r in again["roles"]].count("vr-service") == 1


def test_add_commands_carry_role_and_client() -> None:
    role, client = add_site_commands("s-2", "secret")
    assert role["command"] == "createRole" and role["rolename"] == "site:s-2"
    assert client["command"] == "createClient" and client["roles"] == [{"rolename": "site:s-2"}]
