"""`vreserve kafka ...` never replaces the jars a running broker was started from (issue 11: the
console tools joined the broker's pom, so a broker set up from the older pom has stale jars)."""
from __future__ import annotations

import os

from deploy.runner import KAFKA_TOOLS, Kafka, pom_digest
from vreserve.settings import Settings


def test_tools_use_their_own_folder_while_a_broker_runs_on_stale_jars(tmp_path):
    kafka = Kafka(Settings.from_env().with_(state_dir=tmp_path))
    kafka.libs.mkdir(parents=True)
    (kafka.libs / "kafka_2.13-4.1.1.jar").write_text("the running broker's jar")
    (kafka.dir / "libs.stamp").write_text("an older pom")
    kafka.pid_file.write_text(str(os.getpid()))  # "running": this very process
    own = kafka.dir / "tool-libs"
    own.mkdir()
    (kafka.dir / "tool-libs.stamp").write_text(pom_digest())  # already fetched: no Maven run here
    libs = kafka.tool_libs(progress=lambda m: None)
    assert libs == own
    assert (kafka.libs / "kafka_2.13-4.1.1.jar").read_text() == "the running broker's jar"
    argv = kafka.tool_argv(KAFKA_TOOLS["console-consumer"], ["--topic", "t"], libs)
    assert argv[-3:] == ["org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", "t"]
    assert f"{own}/*" in argv
    # current jars: the broker's own folder is used
    (kafka.dir / "libs.stamp").write_text(pom_digest())
    assert kafka.tool_libs(progress=lambda m: None) == kafka.libs
