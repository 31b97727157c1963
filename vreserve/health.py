"""A tiny health endpoint for the services that have no web server of their own (bridge, dispatcher).

``GET /health`` answers the JSON the service's ``snapshot()`` returns: HTTP 200 when its
``status`` is ``ok``, 503 otherwise, so a probe needs no JSON parsing. ``status`` says what is
failing in ``failing`` (a list of short phrases); never ``ok`` while something is. Runs in a daemon
thread; a port already taken is a warning, not a reason to stop the service.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger(__name__)


def health_status(failing: list[str], started: bool = True) -> str:
    """One word for the probe: starting, ok, or degraded (with ``failing`` saying why)."""
    if not started:
        return "starting"
    return "degraded" if failing else "ok"


class HealthServer:
    """Serve ``snapshot()`` at ``http://host:port/health`` until :meth:`close`."""

    def __init__(self, port: int, snapshot: Callable[[], dict], host: str = "127.0.0.1"):
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        handler = _handler(snapshot)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            log.warning("health endpoint not available: cannot listen on %s:%d (%s)", host, port, exc.strerror)
            return
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(snapshot: Callable[[], dict]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?")[0] != "/health":
                self.send_error(404)
                return
            try:
                body = snapshot()
            except Exception as exc:  # noqa: BLE001 - the probe says so instead of hanging
                body = {"status": "degraded", "failing": [f"health snapshot: {type(exc).__name__}"]}
            data = json.dumps(body, default=str).encode()
            self.send_response(200 if body.get("status") == "ok" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:  # probes every few seconds: not worth a log line each
            return

    return Handler
