"""A Kafka state folder whose jars match the current deploy/pom.xml, for tests that run their own
broker or Kafka's own tools without touching the shared runner's folder.

The shared folder's jars are linked when they were fetched from the same pom (CI's fresh runner);
otherwise they are fetched once per session into a temporary folder (Maven's cache makes that
a matter of seconds once ~/.m2 holds them)."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy.runner import Kafka, pom_digest
from vreserve.settings import Settings


def link_or_fetch_jars(shared: Settings, state_dir: Path, fetched: Path | None) -> None:
    """Make ``state_dir/kafka/libs`` hold current jars: a link to the shared or session copy."""
    own = Kafka(shared.with_(state_dir=state_dir))
    own.dir.mkdir(parents=True, exist_ok=True)
    source = Kafka(shared) if Kafka(shared).libs_current() else None
    libs = source.libs if source else fetched
    if libs is None:
        own.fetch_libs(progress=lambda m: print(f"[kafka jars] {m}", flush=True))
        return
    own.libs.symlink_to(libs.resolve(), target_is_directory=True)
    (own.dir / "libs.stamp").write_text(pom_digest())


@pytest.fixture(scope="session")
def session_kafka_jars(base_settings: Settings, tmp_path_factory) -> Path | None:
    """None when the shared runner's jars are current; else a session folder with fetched jars."""
    if Kafka(base_settings).libs_current():
        return None
    state = tmp_path_factory.mktemp("kafka-jars")
    link_or_fetch_jars(base_settings, state, None)
    return Kafka(base_settings.with_(state_dir=state)).libs
