"""Request input, parsed one way for every handler: each failure is a 400 naming the field.

JSON bodies, ids, Idempotency-Key headers, datetimes and enumerations. A value is accepted only
in a form this service could use all the way to the database: UUIDs in their canonical
spelling, datetimes whose UTC conversion and the arithmetic done on them stay in range, and no
precision silently lost (finer than a microsecond rounds toward the inside of a range).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar
from uuid import UUID

import orjson
from aiohttp import web

from reference.web.errors import BadRequest
from reference.web.openapi import Param

IDEMPOTENCY_KEY_MAX: Final = 200
#: Visible ASCII: what every HTTP stack carries unchanged in a header.
IDEMPOTENCY_KEY: Final = re.compile(rf"[!-~]{{1,{IDEMPOTENCY_KEY_MAX}}}")
IDEMPOTENCY_KEY_SCHEMA: Final = {
    "type": "string",
    "pattern": f"^[!-~]{{1,{IDEMPOTENCY_KEY_MAX}}}$",
    "maxLength": IDEMPOTENCY_KEY_MAX,
}
IDEMPOTENCY_PARAM: Final = Param(
    "Idempotency-Key",
    "header",
    schema=IDEMPOTENCY_KEY_SCHEMA,
    description="A retried request with the same key returns the original operation and "
    "does nothing again; the same key on a different request is a 409.",
)
CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
FRACTION: Final = re.compile(r"[.,](\d+)")
#: A day of margin on either side: a bound may move by a day (a date-only end) and still be
#: a datetime, and a UTC conversion never leaves the calendar.
EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
LATEST: Final = datetime(9999, 12, 30, tzinfo=UTC)
DATE_HINT: Final = "an ISO date (2024-05-01) or datetime (2024-05-01T12:00:00Z; encode '+' as %2B)"

Rounding = Literal["up", "down", "reject"]
E = TypeVar("E", bound=StrEnum)


async def json_object(request: web.Request, field: str = "body") -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(f"{field} is not valid JSON", field=field) from None
    if not isinstance(body, dict):
        raise BadRequest(f"{field} must be a JSON object", field=field)
    return body


def canonical_uuid(value: Any) -> UUID | None:
    """``value`` as a UUID when it is one in canonical spelling (lowercase, hyphenated)."""
    if isinstance(value, str) and CANONICAL_UUID.fullmatch(value):
        return UUID(value)
    return None


def uuid(value: Any, field: str) -> UUID:
    parsed = canonical_uuid(value)
    if parsed is None:
        raise BadRequest(
            f"{field} must be a UUID in canonical form (8-4-4-4-12 lowercase hex)", field=field
        )
    return parsed


def idempotency_key(request: web.Request, field: str = "Idempotency-Key") -> str | None:
    key = request.headers.get(field)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(
            f"{field} must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters", field=field
        )
    return key


def choice(raw: str | None, field: str, kind: type[E], default: E) -> E:
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise BadRequest(f"{field}={raw!r}: expected one of {allowed}", field=field) from None


def in_range(moment: datetime, field: str) -> datetime:
    """``moment`` in UTC, if it and a day either side of it are representable."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise BadRequest(
            f"{field} is out of range ({EARLIEST.date()} to {LATEST.date()} UTC)", field=field
        )
    return utc


def timestamp(raw: str, field: str, rounding: Rounding) -> datetime:
    """An ISO datetime, aware (UTC when naive), in range, in UTC.

    Python keeps microseconds; finer digits round ``up`` (a lower bound) or ``down`` (an upper
    bound), so a range never takes in a row outside it, or are refused (``reject``).
    """
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{field}={raw!r}: expected {DATE_HINT}", field=field) from None
    fraction = FRACTION.search(raw)
    finer = fraction is not None and fraction.group(1)[6:].strip("0") != ""
    if finer and rounding == "reject":
        raise BadRequest(f"{field} is more precise than a microsecond", field=field)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = in_range(moment, field)
    if finer and rounding == "up":
        utc += timedelta(microseconds=1)
    return utc


def date_or_timestamp(raw: str, field: str, rounding: Rounding) -> tuple[datetime, bool]:
    """An ISO date (midnight UTC, and True) or datetime (as :func:`timestamp`, and False)."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return timestamp(raw, field, rounding), False
    return in_range(datetime.combine(day, time(), UTC), field), True
