"""Fixtures of the poison-record tests (issue 10): a connection, subprocesses always stopped."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.poison.helpers import Procs
from tests.stream.stream_helpers import stream_settings  # noqa: F401 - the stream tests' fixture: private topics, deleted after
from vreserve.db import connect


@pytest.fixture
def conn(settings) -> Iterator:
    with connect(settings.pg_dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    try:
        yield ps
    finally:
        ps.stop_all()
