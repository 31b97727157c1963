"""Optimizer: pure model code. A scenario in, a plan out; no Kafka, MQTT or SQL here."""
