"""API errors: each has an HTTP status and a stable `error` string clients can
test for; the body is `{"error": CODE, "detail": SENTENCE}`.

    ApiError
     +-- 400 malformed_body, bad_json, bad_filter, bad_cursor
     +-- 401 unsigned_request, stale_request, unknown_key, bad_signature, token_required
     +-- 403 revoked_key, bad_token, control_disabled
     +-- 413 body_too_large, batch_too_large
     +-- 429 rate_limited
     +-- 503 database_busy (SQLite: another writer, e.g. `dashboard rebuild`, held the
             database past the busy timeout; the request wrote nothing)
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.db.busy import locked
from probe.core.errors import VoipwatchError

log = logging.getLogger("collector")

# seconds a client is asked to wait when the database stayed locked
BUSY_RETRY_AFTER = 60


class ApiError(VoipwatchError):
    def __init__(self, status: int, code: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def error_response(status: int, code: str, detail: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa.exc.OperationalError)
    if not locked(exc):
        raise exc  # a fault: the server's 500, and its traceback in the log
    # another writer held SQLite past the busy timeout: the transaction was rolled
    # back, so the client (a probe keeps its records) can simply send it again
    log.warning("the database stayed locked: %s %s answered 503", request.method,
                request.url.path, extra={"event": "database_busy"})
    return error_response(503, "database_busy", "the database is busy with a long write "
                          "(a dashboard rebuild, a migration or a backup); nothing was "
                          "written: send the request again later",
                          {"Retry-After": str(BUSY_RETRY_AFTER)})


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(sa.exc.OperationalError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
