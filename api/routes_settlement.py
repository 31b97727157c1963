"""Contract loads and settlement runs over HTTP: the same code as `vreserve contracts load` and
`vreserve settle` (vreserve/contracts.py, vreserve/sql_settlement.py), with the authenticated
identity as the actor.

- ``POST /contracts`` (supervisor, so admins too): load or update contracts, all or nothing; every
  problem is a 422 naming the field (``body.contracts.N.FIELD``) and the reason.
- ``POST /emergencies/{id}/settlement`` (supervisor): settle the emergency; 201 with the version it
  issued (the first statement or an ADJUSTMENT), 200 when nothing changed since the last version.
  Owners read their own statements and lines through ``GET /settlement/statements``.
- ``POST /emergencies/{id}/settlement-runs`` (supervisor): the same in a background thread, its
  steps in ``settlement_runs``; a run whose process died reads ``interrupted`` (its advisory lock
  is free) and ``POST /settlement-runs/{id}/resume`` runs it again without issuing twice.
"""
from __future__ import annotations

import logging
import threading
import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.errors import ApiError
from api.routes_read import CONTRACTS_SQL, Id, _conn, _rows, contract_rows
from api.routes_write import _audit, uploaded_file
from api.security import access, requires
from vreserve import auditlog
from vreserve.contracts import INT_LIMITS, MAX_MINOR, ContractsRejected, Problem, items_from_text, load_items
from vreserve.identity import Identity
from vreserve.settlement import SettleResult, document
from vreserve.sql_settlement import settle
from vreserve.sql_supply import SettlementError, load_emergency

log = logging.getLogger("api")
router = APIRouter()
SUPERVISOR = requires("supervisor")

_TEXT_ID = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
_MINOR = Annotated[int, Field(ge=0, le=MAX_MINOR, description="Integer minor units of the currency per unit")]


class ContractIn(BaseModel):
    """One contract as the contracts file states it (docs/supervision.md, "Contracts file")."""

    model_config = ConfigDict(extra="forbid")
    contract_id: _TEXT_ID | None = Field(default=None, description="Omit to replace the one overlapping "
                                                                    "contract of the site and material, or add one")
    site_id: _TEXT_ID
    material_id: _TEXT_ID
    committed_qty: float = Field(ge=0, le=1e15, description="In the material's unit")
    valid_from: date
    valid_to: date
    standby_fee_minor_per_unit_day: float = Field(default=0, ge=0, le=1e15,
                                                  description="Minor units of the currency per unit and day")
    call_off_price_minor_per_unit: _MINOR = 0
    min_response_minutes: int = Field(default=0, ge=0, le=INT_LIMITS["min_response_minutes"], description="Minutes")
    penalty_minor_per_unit: _MINOR = 0
    penalty_grace_share: float = Field(default=0, ge=0, lt=1, description="Share 0..1 of an order")
    late_penalty_minor_per_unit: _MINOR = 0


class ContractsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contracts: list[ContractIn] = Field(min_length=1, max_length=10_000)


def _fields(problems: list[Problem]) -> list[dict]:
    """Each problem as the API's 422 states fields: ``body.contracts.<0-based index>.<field>``."""
    out = []
    for p in problems:
        where = "body.contracts" + (f".{p.index - 1}" if p.index is not None else "")
        out.append({"field": f"{where}.{p.field}" if p.field else where, "reason": str(p)})
    return out


@router.post("/contracts", status_code=201, tags=["supervision"], openapi_extra=access("supervisor"),
             summary="Load or update contracts, all or nothing (the same code as `vreserve contracts load`)")
def post_contracts(request: Request, body: ContractsIn, who: Identity = Depends(SUPERVISOR)) -> dict:
    """201 with `added`, `updated` and the stored contracts as `GET /contracts` shows them
    (`committed_qty` in `unit`, money in integer minor units of `currency`). Nothing is stored
    unless every contract is good: unknown site or material, overlapping another contract of the
    same site and material, dates or numbers out of range are a 422 listing every field and reason."""
    items = [c.model_dump(exclude_unset=True) for c in body.contracts]
    _audit(request, f"{len(items)} contract(s)")
    with _conn(request) as conn:
        try:
            result = load_items(conn, items, f"api:{who.actor}")
        except ContractsRejected as exc:
            fields = _fields(exc.problems)
            raise ApiError(422, "validation_error", f"{len(fields)} problem(s), nothing loaded: {fields[0]['reason']}",
                           fields=fields) from None
        request.state.audit_detail.update(added=result.inserted, updated=result.updated,
                                          contract_ids=list(result.contract_ids[:100]))
        rows = _rows(conn, CONTRACTS_SQL, {"site": None, "owner": None, "ids": list(result.contract_ids)})
    return {"added": result.inserted, "updated": result.updated,
            "items": contract_rows(rows, request.app.state.api.settings.currency)}


CONTRACTS_FORM = {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
    "file": {"type": "string", "format": "binary",
             "description": "The contracts file as for `vreserve contracts load`: .yaml / .yml / .json or .csv "
                            "(the part's file name says which)"}}}}}


@router.post("/contracts/file", status_code=201, tags=["supervision"],
             openapi_extra={**access("supervisor"), "requestBody": {"required": True, "content": CONTRACTS_FORM}},
             summary="Load or update contracts from an uploaded contracts file (multipart), all or nothing")
async def post_contracts_file(request: Request, who: Identity = Depends(SUPERVISOR)) -> dict:
    """`curl -F file=@contracts.csv`: the same reading and checks as `vreserve contracts load FILE`
    (vreserve/contracts.py) and the same answer as `POST /contracts`; a 422 lists every problem by
    row (CSV) or item and field, and nothing is stored unless the whole file is good."""
    _audit(request, "contracts file")
    upload = await uploaded_file(request, "contracts file")
    name = (upload.filename or "").rsplit("/", 1)[-1][:200]
    try:
        text = (await upload.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "validation_error", "file: not UTF-8 text",
                       fields=[{"field": "body.file", "reason": "not UTF-8 text"}]) from None
    request.state.audit_target = f"contracts file {name}"
    return await run_in_threadpool(_load_file, request, who, name, text)


def _load_file(request: Request, who: Identity, name: str, text: str) -> dict:
    try:
        items, where = items_from_text(name, text)
        with _conn(request) as conn:
            result = load_items(conn, items, f"api:{who.actor}:file:{name}", where)
            rows = _rows(conn, CONTRACTS_SQL, {"site": None, "owner": None, "ids": list(result.contract_ids)})
    except ContractsRejected as exc:
        fields = [{"field": f"file.{p.where}.{p.index}" + (f".{p.field}" if p.field else "") if p.index is not None
                   else "file", "reason": str(p)} for p in exc.problems]
        raise ApiError(422, "validation_error", f"{len(fields)} problem(s), nothing loaded: {fields[0]['reason']}",
                       fields=fields) from None
    request.state.audit_detail.update(added=result.inserted, updated=result.updated,
                                      contract_ids=list(result.contract_ids[:100]))
    return {"added": result.inserted, "updated": result.updated,
            "items": contract_rows(rows, request.app.state.api.settings.currency)}


class SettleIn(BaseModel):
    """The settlement period; both omitted: the emergency's days (or the period of its first version)."""

    model_config = ConfigDict(extra="forbid")
    period_from: date | None = None
    period_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "SettleIn":
        if self.period_from and self.period_to and self.period_to < self.period_from:
            raise ValueError(f"period_to {self.period_to} is before period_from {self.period_from}")
        return self


def _settlement_out(result: SettleResult, currency: str) -> dict:
    """The statement document without its lines (they are paged at each version's `lines` route)."""
    doc = document(result, currency)
    for v in doc["versions"]:
        v["line_count"] = len(v.pop("lines"))
        v["lines"] = f"/api/v1/settlement/statements/{v['statement_id']}/lines"
    doc.pop("deliveries")   # per site: the lines route has every site's quantities
    doc.pop("per_site")
    issued = result.issued
    doc["outcome"] = "unchanged" if issued is None else issued.kind
    doc["issued"] = issued.statement_id if issued else None
    return doc


@router.post("/emergencies/{emergency_id}/settlement", tags=["supervision"], openapi_extra=access("supervisor"),
             summary="Settle an emergency with every owner (the same code as `vreserve settle`)")
def post_settlement(request: Request, emergency_id: Id, body: SettleIn = Body(default_factory=SettleIn),
                    who: Identity = Depends(SUPERVISOR)) -> JSONResponse:
    """201 with the version issued (`outcome` `statement`, or `adjustment` holding only the change after
    late status records), 200 with `outcome` `unchanged` when the facts did not change. Money: integer
    minor units of `currency`, positive owed to the owner; quantities strings in their `unit`.
    `issued_by` on each version is the authenticated actor who issued it."""
    _audit(request, emergency_id, period_from=str(body.period_from or ""), period_to=str(body.period_to or ""))
    with _conn(request) as conn:
        try:
            load_emergency(conn, emergency_id)
        except SettlementError as exc:
            raise ApiError(404, "emergency_not_found", str(exc)) from None
        try:
            result = settle(conn, emergency_id, who.actor, body.period_from, body.period_to,
                            progress=lambda m: log.info("settle %s: %s", emergency_id, m))
        except SettlementError as exc:
            raise ApiError(409, "settlement_period_conflict", str(exc)) from None
    request.state.audit_detail.update(issued=result.issued.statement_id if result.issued else None)
    out = _settlement_out(result, request.app.state.api.settings.currency)
    return JSONResponse(out, 201 if result.issued else 200)


# ------------------------------------------------------------------------- settlement runs
#: The run's liveness: the connection running it holds this session advisory lock, so the lock is
#: free exactly when no live process is running it (a killed instance's connection closes and
#: PostgreSQL releases the lock), however long a step takes.
RUN_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('settlement-run:' || %s, 0))"
RUN_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended('settlement-run:' || %s, 0))"
RUN_SQL = ("SELECT run_id, emergency_id, requested_by, period_from, period_to, state, steps, started_at, updated_at,"
           " finished_at, outcome, issued, error, extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)"
           " FROM settlement_runs WHERE run_id = %s")


@router.post("/emergencies/{emergency_id}/settlement-runs", status_code=202, tags=["supervision"],
             openapi_extra=access("supervisor"),
             summary="Settle an emergency in the background; watch its progress at the returned URL")
def post_settlement_run(request: Request, emergency_id: Id, body: SettleIn = Body(default_factory=SettleIn),
                        who: Identity = Depends(SUPERVISOR)) -> dict:
    """For a settlement too long to wait for: 202 at once with `run_id` and `progress` (the URL of
    `GET /settlement-runs/{run_id}`). The run is the same code as `POST .../settlement` and
    `vreserve settle`, with the authenticated actor as `issued_by`; each step it takes is recorded
    with its time, in the database (any API instance answers the progress)."""
    _audit(request, emergency_id, period_from=str(body.period_from or ""), period_to=str(body.period_to or ""))
    run_id = f"SR-{uuid.uuid4().hex[:16]}"
    with _conn(request) as conn:
        try:
            load_emergency(conn, emergency_id)
        except SettlementError as exc:
            raise ApiError(404, "emergency_not_found", str(exc)) from None
        conn.execute("INSERT INTO settlement_runs (run_id, emergency_id, requested_by, period_from, period_to)"
                     " VALUES (%s, %s, %s, %s, %s)",
                     (run_id, emergency_id, who.actor, body.period_from, body.period_to))
    request.state.audit_detail["run_id"] = run_id
    _start(request.app.state.api.pool, run_id, "started")
    return {"run_id": run_id, "emergency_id": emergency_id, "state": "running",
            "progress": f"/api/v1/settlement-runs/{run_id}"}


def _start(pool, run_id: str, first_step: str) -> bool:
    """Claim the run's lock on a connection of its own and run it in a thread; False if a live
    process holds the lock (it is running the run)."""
    conn = pool.getconn()
    try:
        claimed = conn.execute(RUN_LOCK_SQL, (run_id,)).fetchone()[0]
    except Exception:
        pool.putconn(conn)
        raise
    if not claimed:
        pool.putconn(conn)
        return False
    state = conn.execute("SELECT state FROM settlement_runs WHERE run_id = %s", (run_id,)).fetchone()
    if state is None or state[0] != "running":   # finished between the caller's look and this claim
        _release(pool, conn, run_id)
        return False
    threading.Thread(target=_run_settlement, name=f"settle-{run_id}", daemon=True,
                     args=(pool, conn, run_id, first_step)).start()
    return True


def _run_settlement(pool, conn, run_id: str, first_step: str) -> None:
    """The background run on ``conn`` (which holds the run's lock): each progress message becomes a
    step; the end records the outcome. A version an earlier, interrupted attempt of this run stored
    is reported as this run's outcome (settling again issues nothing new: statement ids are per
    emergency and version, and an unchanged statement is not issued twice)."""
    def step(message: str) -> None:
        with pool.connection() as c:
            c.execute("UPDATE settlement_runs SET steps = steps || jsonb_build_array(jsonb_build_object("
                      "'at', clock_timestamp(), 'message', %s::text)), updated_at = clock_timestamp()"
                      " WHERE run_id = %s", (message, run_id))
    emergency_id = "?"
    try:
        step(first_step)
        emergency_id, actor, pf, pt, started = conn.execute(
            "SELECT emergency_id, requested_by, period_from, period_to, started_at FROM settlement_runs"
            " WHERE run_id = %s", (run_id,)).fetchone()
        result = settle(conn, emergency_id, actor, pf, pt, progress=step)
        issued, earlier = result.issued, False
        if issued is None:
            issued = next((v for v in reversed(result.versions)
                           if v.issued_by == actor and v.issued_at >= started), None)
            earlier = issued is not None
        outcome = "unchanged" if issued is None else issued.kind
        step(f"done: {outcome}" + (f" {issued.statement_id}" if issued else "")
             + (" (stored by an interrupted attempt of this run; not issued again)" if earlier else ""))
        _finish(pool, run_id, "done", outcome, issued.statement_id if issued else None, None)
    except Exception as exc:  # noqa: BLE001 - the run's failure is its result, for whoever watches it
        message = str(exc) if isinstance(exc, SettlementError) else f"{type(exc).__name__} (see the server log)"
        log.exception("settlement run %s of %s failed", run_id, emergency_id)
        _finish(pool, run_id, "failed", None, None, message)
    finally:
        _release(pool, conn, run_id)


# ------------------------------------------------------------ interrupted runs, picked up by any instance
#: How often each API process looks for interrupted runs after its start-up sweep, s. A run whose
#: lock was still held at start-up (its dying instance's connection not yet closed), or whose
#: instance dies while this one runs, is picked up by the next sweep.
SWEEP_INTERVAL_S = 30.0
#: Runs marked running and quiet for a moment (a run just inserted by a request is claimed by that
#: request's own process a moment later; the lock, not this age, decides who runs a run).
INTERRUPTED_SQL = ("SELECT run_id FROM settlement_runs WHERE state = 'running'"
                   " AND updated_at < clock_timestamp() - interval '2 seconds' ORDER BY started_at")


def resume_interrupted(pool, instance: str) -> list[str]:
    """Resume every run marked running whose lock is free (no live process runs it); returns the run
    ids this process took. Safe on N instances at once: each run's advisory lock lets exactly one
    claim it, and a live run holds its lock. Each resume is in the audit trail (actor
    ``service:<instance>``, source ``sweep``), as a supervisor's resume is."""
    with pool.connection() as conn:
        candidates = [r[0] for r in conn.execute(INTERRUPTED_SQL).fetchall()]
    taken = []
    for run_id in candidates:
        if _start(pool, run_id, f"resumed by API instance {instance} (its sweep for interrupted runs)"):
            taken.append(run_id)
            with pool.connection() as conn:
                auditlog.append(conn, f"service:{instance}", "sweep", "settlement-runs.resume", "ok", 202,
                                run_id, {"reason": "interrupted: no live API instance held the run"})
            log.warning("settlement run %s was interrupted; resumed by this instance (%s)", run_id, instance)
    return taken


class InterruptedRunSweeper:
    """A daemon thread of each API process: resume interrupted settlement runs at start-up and every
    SWEEP_INTERVAL_S after. A failed sweep (database away) is logged and tried again next time."""

    def __init__(self, pool, instance: str, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.pool, self.instance, self.interval_s = pool, instance, interval_s
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="settlement-run-sweeper", daemon=True)

    def start(self) -> "InterruptedRunSweeper":
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                resume_interrupted(self.pool, self.instance)
            except Exception:  # noqa: BLE001 - the next sweep tries again; the API keeps serving
                log.exception("sweep for interrupted settlement runs failed")
            self.stopping.wait(self.interval_s)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def _release(pool, conn, run_id: str) -> None:
    try:
        conn.execute(RUN_UNLOCK_SQL, (run_id,))
    except Exception:  # noqa: BLE001 - a broken connection has lost its lock with it
        log.warning("settlement run %s: could not release its lock (connection lost)", run_id)
    pool.putconn(conn)


def _finish(pool, run_id: str, state: str, outcome: str | None, issued: str | None, error: str | None) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE settlement_runs SET state = %s, outcome = %s, issued = %s, error = %s,"
                     " finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE run_id = %s",
                     (state, outcome, issued, error, run_id))


def _run_out(conn, run_id: str) -> dict:
    """The run as the API shows it; a 'running' run whose lock is free was interrupted."""
    row = conn.execute(RUN_SQL, (run_id,)).fetchone()
    if row is None:
        raise ApiError(404, "settlement_run_not_found", f"no settlement run {run_id!r}")
    (rid, em, by, pf, pt, state, steps, started, updated, finished, outcome, issued, error, elapsed) = row
    if state == "running" and conn.execute(RUN_LOCK_SQL, (run_id,)).fetchone()[0]:
        conn.execute(RUN_UNLOCK_SQL, (run_id,))
        state = "interrupted"
    return {"run_id": rid, "emergency_id": em, "requested_by": by, "period_from": pf and pf.isoformat(),
            "period_to": pt and pt.isoformat(), "state": state, "stalled": state == "interrupted",
            "resume": f"/api/v1/settlement-runs/{rid}/resume" if state == "interrupted" else None,
            "steps": steps, "started_at": started.isoformat(), "updated_at": updated.isoformat(),
            "finished_at": finished and finished.isoformat(), "elapsed_s": round(float(elapsed), 3),
            "outcome": outcome, "issued": issued, "error": error}


@router.get("/settlement-runs/{run_id}", tags=["supervision"], openapi_extra=access("supervisor"),
            summary="A background settlement's progress: its steps so far, then the outcome")
def get_settlement_run(request: Request, run_id: Id, who: Identity = Depends(SUPERVISOR)) -> dict:
    """`state` running / done / failed, or `interrupted` when no live process is running it any more
    (the API instance running it stopped mid-run; `stalled` is then true and `resume` the URL that
    runs it again); `steps` each with its time; `elapsed_s` in seconds; when done, `outcome`
    (statement, adjustment or unchanged) and `issued` (the statement id, whose document is at
    `GET /settlement/statements`)."""
    with _conn(request) as conn:
        return _run_out(conn, run_id)


@router.post("/settlement-runs/{run_id}/resume", status_code=202, tags=["supervision"],
             openapi_extra=access("supervisor"),
             summary="Run an interrupted background settlement again (it issues no statement twice)")
def resume_settlement_run(request: Request, run_id: Id, who: Identity = Depends(SUPERVISOR)) -> dict:
    """202 when the run was interrupted (its API instance stopped mid-run) and runs again, from the
    start, with its first request's period and `issued_by` (the requester); settling is idempotent, so
    a version the interrupted attempt stored is reported, not issued again. 409 `settlement_run_active`
    while a live process runs it, 409 `settlement_run_finished` once it is done or failed."""
    _audit(request, run_id)
    with _conn(request) as conn:
        run = _run_out(conn, run_id)
    if run["state"] in ("done", "failed"):
        raise ApiError(409, "settlement_run_finished", f"settlement run {run_id} is {run['state']}; start a new one")
    if run["state"] == "running" or not _start(request.app.state.api.pool, run_id,
                                               f"resumed by {who.actor} after its API instance stopped"):
        raise ApiError(409, "settlement_run_active", f"settlement run {run_id} is running in a live API instance")
    request.state.audit_detail["emergency_id"] = run["emergency_id"]
    return {"run_id": run_id, "emergency_id": run["emergency_id"], "state": "running",
            "progress": f"/api/v1/settlement-runs/{run_id}"}
