"""The simulated logistics company's webhook edges: orders POSTed to its receiver by
`vreserve carrier-webhooks run`, statuses posted back through the HTTP API with its carrier token
(the integration for carriers that do not run a Kafka client; docs/api.md).

The receiver does what the contract asks of a real carrier (vreserve/carrier_webhooks.py):

- it verifies the HMAC signature over the raw body and refuses a timestamp outside the replay
  window (401, nothing taken);
- the order id is the idempotency key: a delivery whose key (``order:<id>``, ``cancel:<id>``,
  ``supersede:<id>``) was taken before is answered 200 and not driven again;
- a record it cannot decode is answered 422 with the reason (the sender retries, then holds the
  carrier's queue with that reason for an operator: nothing is skipped silently);
- it answers 200 only once the record is queued for the simulator, and takes one request at a
  time, so records are driven in the order the sender delivered them (topic order).

With a journal (``WebhookConfig.journal``, simulators/logistics_journal.py) what it took survives a
restart: each delivery is journalled before its 200, each finished order marked done, and a
restarted receiver resumes the orders not done and still answers a redelivery "already taken".

At start it registers its receiver's URL with ``POST /api/v1/webhooks`` (its token) and keeps the
signing secret it gets back in memory only. Statuses are posted one at a time, in the order they
were produced; a network error or a 5xx / 429 answer is retried with backoff (nothing dropped), a
4xx refusal is logged with the API's reason and counted.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Callable

import httpx

from simulators.logistics_journal import JournalError, OrderJournal
from simulators.logistics_kafka import Received
from vreserve.carrier_webhooks import SIGNATURE_HEADER, verify_signature
from vreserve.schemas.common import SchemaError, format_ts
from vreserve.schemas.dispatch import OrderStatus, decode_dispatch_record

log = logging.getLogger("vreserve.logistics")

#: Largest webhook body taken (a dispatch record is a few kB).
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class WebhookConfig:
    """Where the receiver listens, and how the carrier reaches the API (the token is a secret: it is
    read from a file by the CLI, never taken from argv)."""

    listen_host: str
    listen_port: int
    api_url: str
    token: str
    #: the URL registered with the API (default: http://<listen host>:<bound port>/orders)
    public_url: str | None = None
    #: the carrier's journal of what it took (None: in memory only, lost with the process)
    journal: Path | None = None


@dataclass
class ReceiverLog:
    """What the receiver took, in order (idempotency keys), and what it refused."""

    taken: list[str] = field(default_factory=list)
    duplicates: int = 0
    bad_signatures: int = 0
    undecodable: int = 0
    resumed: int = 0        # orders read back from the journal at start, not done before
    unjournalled: int = 0   # deliveries refused with 503 because the journal could not be written


class WebhookOrderSource:
    """An HTTP receiver for the carrier's webhook; :meth:`poll` hands its records to the simulator."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.log = ReceiverLog()
        self._queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._secret = ""
        self._server: HTTPServer | None = None
        self._journal = OrderJournal(config.journal) if config.journal else None
        self._sink: ApiStatusSink | None = None
        self.url = ""

    def _resume(self) -> None:
        """Read the journal back: its keys are taken, its orders not done are queued again, in order."""
        replay = self._journal.open()
        self._keys |= replay.keys
        for key, raw in replay.pending:
            try:
                record = decode_dispatch_record(json.dumps(raw).encode())
            except SchemaError as exc:  # journalled only after it decoded: the file was edited
                log.error("journalled delivery %s cannot be decoded (%s); not resumed", key, exc)
                continue
            self._queue.put(Received(record, record.order_id))
            self.log.resumed += 1

    def open(self) -> None:
        """Resume from the journal, listen, then register the URL with the API (the answer holds the
        signing secret)."""
        if self._journal is not None:
            self._resume()
        self._server = HTTPServer((self.config.listen_host, self.config.listen_port), self._handler())
        host, port = self._server.server_address[:2]
        self.url = self.config.public_url or f"http://{host}:{port}/orders"
        threading.Thread(target=self._server.serve_forever, name="logistics-webhook", daemon=True).start()
        r = httpx.post(f"{self.config.api_url}/api/v1/webhooks", json={"url": self.url},
                       headers={"Authorization": f"Bearer {self.config.token}"}, timeout=30)
        if r.status_code != 201:
            self.close()
            raise RuntimeError(f"the API refused to register the webhook {self.url}: HTTP {r.status_code} "
                               f"{_reason(r)}")
        self._secret = r.json()["secret"]

    def take(self, body: bytes, signature: str) -> tuple[int, str]:
        """One delivery: (HTTP status, reason). Pure apart from the queue: the tests call it too."""
        if not verify_signature(self._secret, body, signature):
            with self._lock:
                self.log.bad_signatures += 1
            return 401, "bad or stale signature"
        try:
            envelope = json.loads(body)
            key = envelope["idempotency_key"]
            record = decode_dispatch_record(json.dumps(envelope["record"]).encode())
        except (ValueError, KeyError, TypeError, SchemaError) as exc:
            with self._lock:
                self.log.undecodable += 1
            return 422, f"cannot use this delivery: {exc}"
        with self._lock:
            if key in self._keys:
                self.log.duplicates += 1
                return 200, "already taken"
            if self._journal is not None:
                try:
                    self._journal.taken(key, envelope["record"])
                except OSError as exc:  # not durable: not taken; the sender retries
                    self.log.unjournalled += 1
                    log.error("cannot journal delivery %s: %s", key, exc)
                    return 503, "the carrier cannot record the delivery now; retry"
            self._keys.add(key)
            self.log.taken.append(key)
            self._queue.put(Received(record, record.order_id))
        return 200, "taken"

    def _handler(self):
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    status, reason = 413, "body too large"
                else:
                    status, reason = source.take(self.rfile.read(length), self.headers.get(SIGNATURE_HEADER, ""))
                body = json.dumps({"result": reason}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_a):
                pass

        return Handler

    def poll(self) -> list[Received]:
        out = []
        while True:
            try:
                out.append(self._queue.get(timeout=0.1 if not out else 0))
            except queue.Empty:
                return out

    def started(self, _ref) -> None:
        """Nothing to hold back: the sender keeps the delivery rows."""

    def bind(self, sink: "ApiStatusSink") -> None:
        """The sink the order's statuses go to: an order is journalled done only once they were posted."""
        self._sink = sink

    def finished(self, ref) -> None:
        """An order is done (``ref``: its id): once its last status was posted, it is journalled done, so
        that a restart does not drive it again (killed before that, the restart drives it again and
        posts the same status ids, which the API and the dispatcher de-duplicate)."""
        if self._journal is not None and ref is not None and self._sink is not None:
            self._sink.after_posted(lambda: self._mark_done(ref))

    def _mark_done(self, order_id: str) -> None:
        with self._lock:
            try:
                self._journal.done(order_id)
            except (OSError, JournalError) as exc:  # not marked: a restart drives it again (same status ids)
                log.error("cannot journal order %s as done: %s", order_id, exc)

    def commit(self) -> None:
        """Nothing to commit."""

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._journal is not None:
            self._journal.close()


def _reason(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return r.text[:200]


class ApiStatusSink:
    """Statuses posted to ``POST /api/v1/orders/{id}/status`` one at a time, in order, by a thread."""

    def __init__(self, config: WebhookConfig, max_backoff_s: float = 10.0) -> None:
        self.config = config
        self.max_backoff_s = max_backoff_s
        self.posted = 0
        self.refused: list[tuple[str, str]] = []  # (status id, the API's reason)
        #: statuses to post, callbacks to run once everything before them was posted, None: stop
        self._queue: queue.SimpleQueue[OrderStatus | Callable[[], None] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logistics-status-poster", daemon=True)
        self._thread.start()

    def send(self, status: OrderStatus) -> None:
        self._queue.put(status)

    def after_posted(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the poster's thread) once every status sent before it was posted or refused."""
        self._queue.put(callback)

    def pump(self) -> None:
        """The thread does the work."""

    def _run(self) -> None:
        with httpx.Client(base_url=self.config.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {self.config.token}"}) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if isinstance(item, OrderStatus):
                    if not self._post(client, item):
                        return  # stopped before it was posted: nothing after it counts as posted
                else:
                    item()

    def _post(self, client: httpx.Client, status: OrderStatus) -> bool:
        """Post one status, retrying; False if stopped before the API answered it."""
        body = {"status": status.status, "at": format_ts(status.at), "status_id": status.status_id}
        body.update({k: v for k, v in (("qty", status.qty), ("reason", status.reason)) if v is not None})
        backoff = 0.5
        while not self._stop.is_set():
            try:
                r = client.post(f"/api/v1/orders/{status.order_id}/status", json=body)
                if r.status_code < 300:
                    self.posted += 1
                    return True
                if r.status_code < 500 and r.status_code != 429:
                    log.error("the API refused status %s of order %s: HTTP %d %s", status.status, status.order_id,
                              r.status_code, _reason(r))
                    self.refused.append((status.status_id, _reason(r)))
                    return True
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}"
            log.warning("status %s of %s not posted (%s); again in %.1f s", status.status, status.order_id, why,
                        backoff)
            self._stop.wait(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Post what is queued (up to ``timeout_s``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join(5)
