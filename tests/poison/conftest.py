"""Fixtures of the poison-record tests (issue 10): a connection, subprocesses always stopped."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.dispatcher.conftest import procs  # noqa: F401 - subprocesses, always stopped
from tests.dispatcher.conftest import second_settings  # noqa: F401 - a private database and topic prefix
from tests.stream.stream_helpers import stream_settings  # noqa: F401 - the stream tests' fixture: private topics, deleted after
from vreserve.db import connect


@pytest.fixture
def conn(settings) -> Iterator:
    with connect(settings.pg_dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def private(second_settings) -> Iterator[tuple]:
    """Private topics and database, with a connection: a consumer fuzzed there starts on empty
    topics (no other test's emergencies to plan first) and nobody else reads its bad records."""
    with connect(second_settings.pg_dsn, autocommit=True) as c:
        yield second_settings, c
