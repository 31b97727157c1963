"""Stream test fixtures (defined in stream_helpers, a uniquely named module)."""
from stream_helpers import stream_settings, worker_factory  # noqa: F401
