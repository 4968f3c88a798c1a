"""Domain errors and the one middleware that turns every error into a JSON body.

::

    ApiError                 status, code, message, field
    ├── BadRequest           400  input that does not parse or is out of range (names the field)
    │   └── PayloadTooLarge  413  more ids / bytes than the configured cap
    ├── Unauthorized         401  no bearer token, or one that does not verify
    ├── NotFound             404  absent, or not the caller's (never tell the two apart)
    └── Conflict             409  the request clashes with the current state

Anything else that escapes a handler is logged and answered with a 500 JSON body that carries
no internals.
"""

from __future__ import annotations

import logging
from typing import Any, Final

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
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    return json_response(error.body(), status=error.status, headers=headers)


def http_error_field(exc: web.HTTPException) -> str:
    """What a routing-level refusal was about: the method, the body's size, or the path."""
    return {405: "method", 413: "body"}.get(exc.status, "path")


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
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response({"error": "internal_error", "message": "internal error"}, 500)
