"""Scale-out tests reuse the ingest tests' fixtures (a registry, an MQTT service client, a topic reader)."""
from tests.ingest.conftest import registry, service_client, topic_reader  # noqa: F401
from tests.dispatcher.conftest import procs  # noqa: F401,E402
