"""The demo: an orchestration of every stage on the real services (``vreserve demo``)."""
