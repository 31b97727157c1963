"""The ASGI app: one front door for people and systems (`vreserve serve`).

Stateless: every fact lives in PostgreSQL (users, tokens, signing key, audit trail) or Kafka, so
several instances can run behind a load balancer. Every route is under /api/v1; OpenAPI 3.1 at
/openapi.json, interactive docs at /api/docs. Every state-changing request, refused or not,
leaves one hash-chained record in the audit trail (vreserve/auditlog.py), appended before its
answer is sent.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api import errors, routes_admin, routes_auth, routes_read, routes_settlement, routes_supervision, routes_write
from api import timing
from api.security import requires
from console.routes import mount_console
from vreserve import db_access
from vreserve import auditlog
from vreserve.dead_letters import DeadLetterReader
from vreserve.gc_tuning import freeze_startup_objects
from vreserve.identity import signing_key
from vreserve.operations import Publisher
from vreserve.settings import Settings

log = logging.getLogger("api")
API_PREFIX = "/api/v1"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class ApiState:
    settings: Settings
    pool: ConnectionPool
    #: For the hot read paths (identity, live stock), which run on the event loop without a thread hop.
    apool: AsyncConnectionPool
    publisher: Publisher
    signing_key: bytes
    audit: "AuditWriter"
    loop_lag: timing.LoopLag
    #: The dead-letter topic tailed into a bounded in-memory index (vreserve/dead_letters.py).
    dead_letters: DeadLetterReader


def create_app(settings: Settings, pool_size: int = 10) -> FastAPI:
    """Build the app for ``settings`` (the database pool and Kafka producer open with the app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = ConnectionPool(settings.pg_dsn_for(db_access.API), min_size=1, max_size=pool_size, open=True,
                              kwargs={"autocommit": True, "prepare_threshold": None})
        apool = AsyncConnectionPool(settings.pg_dsn_for(db_access.API), min_size=2, max_size=pool_size, open=False,
                                    kwargs={"autocommit": True})
        await apool.open()
        with pool.connection() as conn:
            key = signing_key(conn)
        audit = AuditWriter(apool)
        loop_lag = timing.LoopLag()
        loop_lag.start()
        timing.GC_PAUSES.install()
        app.openapi()   # built now (the docs' first request would build it), so it is frozen below
        freeze_startup_objects()
        dead_letters = DeadLetterReader(settings).start()
        app.state.api = ApiState(settings, pool, apool, Publisher(settings), key, audit, loop_lag, dead_letters)
        sweeper = routes_settlement.InterruptedRunSweeper(pool, f"{socket.gethostname()}:{os.getpid()}").start()
        try:
            yield
        finally:
            sweeper.stop()
            dead_letters.stop()
            await loop_lag.stop()
            await audit.close()
            app.state.api.publisher.close()
            await apool.close()
            pool.close()

    app = FastAPI(
        title="vreserve API", version="1.0.0", lifespan=lifespan,
        openapi_url="/openapi.json", docs_url="/api/docs", redoc_url=None,
        description="The virtual public reserve's front door: live stock, emergencies, dispatch orders, "
                    "settlement. Every quantity comes with its unit, money in integer minor units of the "
                    "stated currency. Each route states the role it needs (`x-required-role`).",
    )
    errors.install(app)

    for module in (routes_auth, routes_read, routes_write, routes_supervision, routes_settlement, routes_admin):
        app.include_router(module.router, prefix=API_PREFIX)
    mount_console(app, settings, requires("viewer"), requires("operator"))  # the console at / (issue 15)
    app.add_middleware(errors.BodyLimit)
    app.add_middleware(AuditTrail)
    return app


class AuditTrail:
    """ASGI middleware (outermost): each write request's audit record is appended when its response
    starts, before the client sees the answer. So a client never holds an answer whose record is
    not yet in the trail, and one client's requests are in the trail in the order it sent them
    (appended after the answer, a record could land after the next request's under load). Every
    write's answer, and a read's that sends ``X-Server-Timing``, gets a ``server-timing`` header
    (api/timing.py): where its time went."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        write = scope["method"] in WRITE_METHODS
        if not write and not timing.asked(scope):   # a read pays nothing unless it asks
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        recorded = False

        async def capture(message):
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                app_s = time.perf_counter() - t0
                if write:
                    with timing.stage(Request(scope), "audit"):
                        written_s = await _append_audit(Request(scope), message["status"])
                    timing.add(Request(scope), "audit_tx", written_s)
                lag = scope["app"].state.api.loop_lag.recent if hasattr(scope["app"].state, "api") else 0.0
                message = {**message, "headers": [*message.get("headers", []), timing.header(scope, app_s, lag)]}
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if write and not recorded:  # no answer started: an unhandled error (the outer layer answers 500)
                await _append_audit(Request(scope), 500)


class AuditWriter:
    """Appends this process's audit records in batches: each request waits until its own record is
    in the trail, but the requests waiting together share one transaction (one lock on the chain,
    one commit). Appending one record per transaction serialised every write request of every
    instance on the chain's lock and capped them near 200/s on two cores."""

    #: Most records in one transaction (bounds the time the chain's lock is held).
    BATCH = 256

    def __init__(self, apool: AsyncConnectionPool) -> None:
        self.apool = apool
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def append(self, entry: auditlog.Entry) -> float:
        """Return once ``entry`` is in the trail (or its loss is logged: the answer is already decided),
        with the seconds its batch's transaction took (the rest of the wait was the queue)."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((entry, done))
        return await done

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            stop = batch[-1] is None
            if stop:
                batch.pop()
            if batch:
                await self._write(batch)
            if stop:
                return

    async def _write(self, batch: list) -> None:
        t0 = time.perf_counter()
        try:
            async with self.apool.connection() as conn:
                await auditlog.append_many_async(conn, [entry for entry, _ in batch])
        except Exception:  # noqa: BLE001 - a lost audit record must be loud, and must not kill the writer
            log.exception("could not append %d audit record(s): %s", len(batch),
                          ", ".join(f"{e.action} by {e.actor}" for e, _ in batch))
        spent = time.perf_counter() - t0
        for _, done in batch:
            if not done.done():
                done.set_result(spent)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self.task is not None and not self.task.done():
            await self.queue.put(None)
            await self.task


def audit_entry(request: Request, status: int) -> auditlog.Entry:
    """One write request's record: who (authenticated, else what they claimed), from where, what,
    the outcome; refused attempts (401/403/409/422/413...) included."""
    who = getattr(request.state, "identity", None)
    actor = who.actor if who is not None else (f"anonymous (claimed {request.state.claimed})"
                                                if getattr(request.state, "claimed", None) else "anonymous")
    outcome = "ok" if status < 400 else "error" if status >= 500 else "refused"
    detail = dict(getattr(request.state, "audit_detail", None) or {})
    code = getattr(request.state, "error_code", None)
    if code:
        detail["code"] = code
    source = request.client.host if request.client else "?"
    return auditlog.Entry(actor, source, f"{request.method} {request.url.path}", outcome, status,
                          getattr(request.state, "audit_target", ""), detail)


async def _append_audit(request: Request, status: int) -> float:
    return await request.app.state.api.audit.append(audit_entry(request, status))
