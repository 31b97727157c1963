"""Fixtures of the supervision tests: a connection to the session's private database, and a
fresh pair of materials and a region per test (helpers that write rows are in sv_helpers.py)."""
from __future__ import annotations

from typing import Iterator

import pytest

from sv_helpers import World
from vreserve.db import connect


@pytest.fixture
def conn(settings) -> Iterator:
    with connect(settings.pg_dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def world(conn, unique) -> World:
    w = World(unique, f"reg-{unique}", f"cell-{unique}", f"masks-{unique}", f"water-{unique}")
    conn.execute("INSERT INTO materials VALUES (%s, 'Masks', 'box', 'protective', true),"
                 " (%s, 'Water', 'l', 'living', true)", (w.masks, w.water))
    return w


