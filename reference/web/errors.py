"""Domain errors and the one middleware that turns every error into a JSON body.

::

    ApiError                 status, code, message, field
    ├── BadRequest           400  input that does not parse or is out of range (names the field)
    │   └── PayloadTooLarge  413  more ids / bytes than the configured cap
    ├── Unauthorized         401  no bearer token, or one that does not verify
    ├── NotFound             404  absent, or not the caller's (never tell the two apart)
    ├── Conflict             409  the request clashes with the current state
    └── Unavailable          503  not ready yet (work under way): retry after ``retry_after_s``

A dependency that is down (connection refused, lost, the server shutting down) or too slow
(statement or lock timeout, no pool connection in time) is a 503 with ``Retry-After`` and
``{"error": "database_unavailable" | "database_timeout"}``, logged in one line, never with the
server's address. A client that went away mid-response is not an error: one log line, and the
request is counted under status 499 ("client closed request"). Anything else that escapes a
handler is logged and answered with a 500 JSON body that carries no internals.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from reference.web.typedefs import Handler

log = logging.getLogger(__name__)

BODY_HEADERS: Final = frozenset({"content-type", "content-length", "content-encoding"})


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unavailable(ApiError):
    """Answered with ``Retry-After``: the details carry ``retry_after_s``."""

    status = 503
    code = "unavailable"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(error: ApiError) -> web.Response:
    headers = None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, Unavailable):
        headers = {"Retry-After": str(error.details.get("retry_after_s", RETRY_AFTER_S))}
    return json_response(error.body(), status=error.status, headers=headers)


def http_error_field(exc: web.HTTPException) -> str:
    """What a routing-level refusal was about: the method, the body's size, or the path."""
    return {405: "method", 413: "body"}.get(exc.status, "path")


CLIENT_CLOSED: Final = 499
RETRY_AFTER_S: Final = "1"
DATABASE_UNAVAILABLE: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionRefusedError,
    ConnectionResetError,
)
DATABASE_TIMEOUT: Final = (TimeoutError, asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _connection_lost(exc: BaseException) -> bool:
    """asyncpg's own words for a connection the server cut: a protocol left waiting for a
    reply that never comes (the server's farewell arrived while the connection was idle), or a
    call on a connection already closed."""
    if isinstance(exc, asyncpg.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def dependency_failure(exc: BaseException) -> str | None:
    """The 503 error code for a database that is down or too slow; None for anything else.

    A connection cut mid-transaction surfaces as whatever the cleanup hit next (a rollback on a
    closed connection), so the exceptions it was raised during are looked at too.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, DATABASE_TIMEOUT):
            return "database_timeout"
        if isinstance(cause, DATABASE_UNAVAILABLE) or _connection_lost(cause):
            return "database_unavailable"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        # Allow (405) and the like are part of the answer; the body's own headers are not.
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in BODY_HEADERS}
        body = {"error": code, "message": exc.text or exc.reason, "field": http_error_field(exc)}
        return json_response(body, exc.status, headers=kept)
    except asyncio.CancelledError:
        if client_gone(request):
            log.info("client closed %s %s (cancelled)", request.method, request.path)
        raise
    except Exception as exc:
        if client_gone(request):
            log.info("client closed %s %s (%s)", request.method, request.path, type(exc).__name__)
            return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
        failure = dependency_failure(exc)
        if failure is not None:
            log.warning(
                "%s on %s %s (%s)", failure, request.method, request.path, type(exc).__name__
            )
            return json_response(
                {"error": failure, "message": "the database is unavailable or too slow; retry"},
                503,
                headers={"Retry-After": RETRY_AFTER_S},
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal_error", "message": "internal error"}, 500)
