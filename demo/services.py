"""The demo's own place on the shared services: a fresh database, its own topics, no leftovers of
earlier demos (their topics and their bridges' MQTT sessions), and a console login."""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Callable

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from vreserve import identity as ident
from vreserve import kafka_clients
from vreserve.db import connect
from vreserve.kafka_access import ADMIN
from vreserve.mqtt import end_session
from vreserve.settings import Settings

Say = Callable[[str], None]

#: A demo's topic prefix (``demo<run id>.``); its bridge's MQTT client id is ``<prefix>bridge-1``.
_DEMO_PREFIX = re.compile(r"demo[0-9a-f]{6}\.")


def fresh_database(settings: Settings, name: str) -> str:
    """Drop and create database ``name`` on the configured server; returns its DSN."""
    info = conninfo_to_dict(settings.pg_dsn)
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(**{**info, "dbname": name})


def drop_old_demo_topics(settings: Settings, keep_prefix: str) -> tuple[int, set[str], set[str]]:
    """Delete earlier demos' topics; returns (topics deleted, their prefixes, prefixes still alive).

    Only the default demo does this (see ``--database``); "alive" is every demo prefix left with a
    topic (the current one), whose bridge session must not be touched.
    """
    admin = kafka_clients.admin(settings, ADMIN, request_timeout_ms=15000)
    try:
        names = admin.list_topics()
        old = [t for t in names if t.startswith("demo") and not t.startswith(keep_prefix)]
        if old:
            admin.delete_topics(old)
        prefixes = {m.group(0) for t in old if (m := _DEMO_PREFIX.match(t))}
        alive = {m.group(0) for t in names if t.startswith(keep_prefix) and (m := _DEMO_PREFIX.match(t))}
        return len(old), prefixes, alive
    finally:
        admin.close()


def leftover_demo_sessions(old_prefixes: set[str], keep_prefixes: set[str]) -> list[str]:
    """MQTT client ids of earlier demos' bridges whose persistent sessions may still be queued.

    A demo's bridge ends its own session when it stops (``--end-session-on-stop``); one that was
    killed leaves its session behind, and its topics too. Mosquitto has no API that lists
    sessions, so the topics are the record: each deleted demo prefix P names the bridge
    ``P + "bridge-1"``. ``keep_prefixes`` (demos that still have topics) are never touched.
    """
    ids = {f"{p}bridge-1" for p in old_prefixes}
    return sorted(i for i in ids if not any(i.startswith(k) for k in keep_prefixes))


def end_demo_sessions(settings: Settings, client_ids: list[str], say: Say = print) -> int:
    """End each session (connect once with a clean session); returns how many were ended."""
    ended = 0
    for cid in client_ids:
        try:
            end_session(settings.mqtt, cid, timeout=5)
            ended += 1
        except Exception as exc:  # best effort: a leftover session only wastes broker memory
            say(f"could not end the MQTT session {cid}: {exc}")
    return ended


def clear_earlier_demos(settings: Settings, keep_prefix: str, say: Say) -> tuple[int, int]:
    """Delete earlier demos' topics and end their bridges' sessions; returns (topics, sessions)."""
    dropped, old_prefixes, alive = drop_old_demo_topics(settings, keep_prefix)
    leftover = leftover_demo_sessions(old_prefixes, alive | {keep_prefix})
    return dropped, end_demo_sessions(settings, leftover, say)


def console_login(dsn: str, out: Path, api_addr: str, say: Say) -> str:
    """A demo operator for the console that `vreserve serve` shows at / (its password goes to a 0600
    file, never to the screen or the logs). Returns the line that tells a person where to look."""
    password = secrets.token_urlsafe(12)
    with connect(dsn, autocommit=True) as conn:
        ident.add_user(conn, "demo-operator", "operator", password, "demo")
    login = out / "console-login.txt"
    login.touch(mode=0o600)
    login.chmod(0o600)
    login.write_text(f"user: demo-operator\npassword: {password}\n")
    line = f"console: http://{api_addr}/ (user demo-operator, password in {login})"
    say(line)
    return line
