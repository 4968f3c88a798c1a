"""Keyset cursors and page sizes, shared by every paged endpoint.

A cursor is the unpadded base64url of a JSON array: the sort key of the last row served (plus
whatever else the endpoint needs to check it, such as search's fingerprint). Clients treat it
as opaque; on the way back its shape is checked, and anything this service could not have
issued is a 400 naming the parameter, never a 500.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import orjson

from reference.settings import Settings
from reference.web import inputs
from reference.web.errors import BadRequest
from reference.web.openapi import Param


def limit_schema(settings: Settings) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": settings.page_size_max,
        "default": min(settings.page_size_default, settings.page_size_max),
    }


LIMIT_PARAM: Final = Param("limit", schema=limit_schema, description="page size")
CURSOR_PARAM: Final = Param(
    "cursor",
    description="opaque: next_cursor of the previous page, returned unchanged (anything else "
    "is a 400)",
)


def _foreign(field: str) -> BadRequest:
    return BadRequest(f"{field} is not one this service issued", field=field)


def _uuid_text(value: Any) -> str:
    # orjson takes only uuid.UUID itself; asyncpg's ids are a subclass.
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} does not belong in a cursor")


def encode_cursor(values: Sequence[Any]) -> str:
    """``datetime`` (kept with its offset) and ``UUID`` items are written as strings."""
    raw = orjson.dumps(list(values), default=_uuid_text)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    raw: str, *, field: str = "cursor", shape: Sequence[type] | None = None
) -> list[Any]:
    """The items of a cursor; with ``shape``, exactly that many, each of that JSON type."""
    try:
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        raise _foreign(field) from None
    if not isinstance(values, list):
        raise _foreign(field)
    if shape is not None and (
        len(values) != len(shape)
        or not all(isinstance(v, kind) for v, kind in zip(values, shape, strict=True))
    ):
        raise _foreign(field)
    return values


def cursor_datetime(value: Any, *, field: str = "cursor") -> datetime:
    """A cursor's timestamp: written with its offset and at most microseconds by
    :func:`encode_cursor`, so anything else (naive, finer, out of range) is foreign."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                inputs.timestamp(value, field, "reject")
                return moment
        except (ValueError, BadRequest):
            pass
    raise _foreign(field)


def cursor_uuid(value: Any, *, field: str = "cursor") -> UUID:
    parsed = inputs.canonical_uuid(value)
    if parsed is None:
        raise _foreign(field)
    return parsed


def parse_limit(raw: str | None, settings: Settings, *, field: str = "limit") -> int:
    """The page size asked for; absent or empty is the configured default."""
    most = settings.page_size_max
    if raw is None or raw == "":
        return min(settings.page_size_default, most)
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"{field} must be an integer, not {raw!r}", field=field) from None
    if not 1 <= limit <= most:
        raise BadRequest(f"{field} must be between 1 and {most}, not {limit}", field=field)
    return limit
