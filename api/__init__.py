"""The HTTP API (issue 14): one front door for people and systems. `vreserve serve`."""
