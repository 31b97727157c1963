"""Dispatcher: mode events, per-period re-planning from live stock, dispatch orders on Kafka."""
