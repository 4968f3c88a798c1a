"""Response headers every answer carries, and the limits on request lines and headers.

aiohttp refuses an oversize request line or header field in its parser, before any handler
or middleware, with a ``text/plain`` 400. The parser's limits are raised (``HANDLER_ARGS``) so
such requests reach :func:`size_limit_middleware`, which answers in JSON naming the header
(431) or the path (414). Past the parser's own, higher limits aiohttp's plain 400 remains.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from reference.web.errors import ApiError
from reference.web.typedefs import Handler

#: What one request line or one header may hold (aiohttp's own default).
MAX_LINE: Final = 8190
#: Total header bytes of one request.
MAX_HEADERS_BYTES: Final = 32 * 1024
#: The parser's limits, well above ours so that the middleware sees and names the excess.
HANDLER_ARGS: Final[dict[str, Any]] = {"max_line_size": 65_536, "max_field_size": 65_536}
SERVER: Final = "workspace-bench"


class HeaderTooLarge(ApiError):
    status = 431
    code = "header_too_large"


class UriTooLong(ApiError):
    status = 414
    code = "uri_too_long"


@web.middleware
async def size_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.raw_path) > MAX_LINE:
        raise UriTooLong(f"the request target is over {MAX_LINE} bytes", field="path")
    total = 0
    for name, value in request.raw_headers:
        total += len(name) + len(value)
        if len(name) + len(value) > MAX_LINE:
            header = name.decode("latin-1")
            raise HeaderTooLarge(f"header {header} is over {MAX_LINE} bytes", field=header)
    if total > MAX_HEADERS_BYTES:
        raise HeaderTooLarge(f"the headers total over {MAX_HEADERS_BYTES} bytes", field="headers")
    return await handler(request)


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: no sniffing, no server version, JSON never stored by caches."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = SERVER
    if response.content_type == "application/json" and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "private, no-store"
