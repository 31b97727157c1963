"""Error shapes and the edges that guard the app: every error is
``{"error": {"code", "message", ...}}`` with a stable code; validation errors list each field and
its reason; nothing internal (stack traces, SQL, secrets) ever reaches a client; bodies are capped."""
from __future__ import annotations

import json
import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vreserve.operations import Refused

log = logging.getLogger("api")

#: Largest request body accepted, bytes (a demand file upload is the biggest legitimate one).
MAX_BODY_BYTES = 2 * 1024 * 1024

_HTTP_CODES = {400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "body_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests"}


class ApiError(Exception):
    """An error with a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.extra = extra  # more members of the error body, e.g. ``fields`` of a 422


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        request.state.error_code = exc.code
        headers = exc.headers or ({"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status, headers=headers)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        request.state.error_code = exc.code
        return JSONResponse(error_body(exc.code, exc.message), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        fields = [{"field": _field(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors()]
        request.state.error_code = "validation_error"
        first = fields[0] if fields else {"field": "?", "reason": "invalid"}
        return JSONResponse(error_body("validation_error", f"{first['field']}: {first['reason']}", fields=fields),
                            422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        request.state.error_code = code
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        request.state.error_code = "internal_error"
        return JSONResponse(error_body("internal_error", f"internal error; quote incident {incident} to the "
                                                         "operators", incident=incident), 500)


class BodyLimit:
    """ASGI middleware: refuse a body larger than ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps(error_body("body_too_large", f"request body over {self.limit} bytes")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
