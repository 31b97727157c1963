"""Ingest: the site registry and the MQTT -> Kafka bridge (validate, dead-letter, forward)."""
