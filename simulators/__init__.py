"""Simulators: the site sensor fleet and the downstream logistics system, for demos and tests."""
