"""A search as the client states it: parameters, cursors and the saved search state, checked."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import orjson

from reference.assets import Asset, ContentType, ModelType, Quality, Status
from reference.settings import Settings
from reference.web import inputs, paging
from reference.web.errors import BadRequest

MAX_QUERY_CHARS: Final = 200
#: pg_trgm indexes runs of letters and digits; a pattern without three in a row has no trigram.
TRIGRAM_RUN: Final = re.compile(r"[^\W_]{3}")
ALL: Final = "all"
PLAIN_MODEL: Final = "none"
#: Trigram indexes on ``prompt_fold``, the stored ``search_fold(prompt)`` (sql/0014), with the
#: user id when btree_gin exists.
TRIGRAM_INDEXES: Final = ("idx_images_user_prompt_fold_trgm", "idx_videos_user_prompt_fold_trgm")
PLAIN_TRIGRAM_INDEXES: Final = ("idx_images_prompt_fold_trgm", "idx_videos_prompt_fold_trgm")


class SortKey(StrEnum):
    DATE = "date"
    PROMPT = "prompt"
    QUALITY = "quality"
    MODEL = "model"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


class TextMode(StrEnum):
    """How a prompt query is answered (reported in every response that has one)."""

    TRIGRAM = "trigram"  # candidates from a trigram index, each tested with the whole query
    SCAN = "scan"  # no trigram index (pg_trgm unavailable): the test on every row, correct, slower
    SHORT = "short"  # fewer than three letters in a row: strpos over the user's rows


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search. ``None`` filters mean "all"; ``model=""`` means the plain model."""

    q: str = ""
    type: ContentType | None = None
    quality: Quality | None = None
    model: str | None = None
    status: Status | None = None
    start: str | None = None
    end: str | None = None
    sort: SortKey = SortKey.DATE
    order: SortOrder = SortOrder.DESC
    include_dismissed: bool = False
    #: Bounds as a half-open range [start_at, end_before), derived from ``start`` and ``end``.
    start_at: datetime | None = field(default=None, compare=False)
    end_before: datetime | None = field(default=None, compare=False)

    @property
    def text_needed(self) -> bool:
        return self.q != ""

    def fingerprint(self) -> str:
        """Everything but the page: a cursor is only valid for the search that made it."""
        raw = orjson.dumps(self.state(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:12]

    def state(self) -> dict[str, Any]:
        """The persisted form: query, filters and sort, as the client sent them."""
        return {
            "query": self.q,
            "filters": {
                "type": ALL if self.type is None else self.type.value,
                "quality": ALL if self.quality is None else self.quality.value,
                "model": ALL if self.model is None else (self.model or PLAIN_MODEL),
                "status": ALL if self.status is None else self.status.value,
                "start": self.start,
                "end": self.end,
                "include_dismissed": self.include_dismissed,
            },
            "sort": {"by": self.sort.value, "order": self.order.value},
        }


@dataclass(frozen=True, slots=True)
class Page:
    query: SearchQuery
    limit: int
    cursor: tuple[Any, UUID] | None = None


# --- parsing ------------------------------------------------------------------------------------


def _choice(raw: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    if raw is None or raw == ALL:
        return None
    if raw not in allowed:
        choices = ", ".join((ALL, *allowed))
        raise BadRequest(f"{name}={raw!r}: expected one of {choices}", field=name)
    return raw


def _bound(raw: str | None, name: str, rounding: inputs.Rounding) -> tuple[datetime, bool] | None:
    """An ISO date (a whole UTC day) or datetime (UTC when naive); True when date-only."""
    if raw is None or raw == "":
        return None
    return inputs.date_or_timestamp(raw, name, rounding)


def _bool(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise BadRequest(f"{name}={raw!r}: expected true or false", field=name)


def _text(raw: str | None, name: str) -> str:
    if raw is None:
        return ""
    if len(raw) > MAX_QUERY_CHARS:
        raise BadRequest(
            f"{name} is {len(raw)} characters long; the limit is {MAX_QUERY_CHARS}", field=name
        )
    if "\x00" in raw:
        raise BadRequest(f"{name} contains a NUL character", field=name)
    return raw


def parse_query(params: Mapping[str, str | None]) -> SearchQuery:
    """Validate the search fields of ``params`` (absent or ``None`` means the default)."""
    model_raw = _choice(params.get("model"), "model", (*(m.value for m in ModelType), PLAIN_MODEL))
    type_raw = _choice(params.get("type"), "type", tuple(c.value for c in ContentType))
    quality_raw = _choice(params.get("quality"), "quality", tuple(q.value for q in Quality))
    status_raw = _choice(params.get("status"), "status", tuple(s.value for s in Status))
    sort_raw = params.get("sort") or SortKey.DATE.value
    order_raw = params.get("order") or SortOrder.DESC.value
    if sort_raw not in {k.value for k in SortKey}:
        raise BadRequest(f"sort={sort_raw!r}: expected one of {', '.join(SortKey)}", field="sort")
    if order_raw not in {o.value for o in SortOrder}:
        raise BadRequest(f"order={order_raw!r}: expected asc or desc", field="order")
    start = _bound(params.get("start"), "start", "up")
    end = _bound(params.get("end"), "end", "down")
    end_before: datetime | None = None
    if end is not None:
        moment, whole_day = end
        end_before = moment + (timedelta(days=1) if whole_day else timedelta(microseconds=1))
    start_at = None if start is None else start[0]
    if start_at is not None and end_before is not None and start_at >= end_before:
        raise BadRequest("end is before start: the date range is reversed", field="end")
    return SearchQuery(
        q=_text(params.get("q"), "q"),
        type=None if type_raw is None else ContentType(type_raw),
        quality=None if quality_raw is None else Quality(quality_raw),
        model=None if model_raw is None else ("" if model_raw == PLAIN_MODEL else model_raw),
        status=None if status_raw is None else Status(status_raw),
        start=params.get("start") or None,
        end=params.get("end") or None,
        sort=SortKey(sort_raw),
        order=SortOrder(order_raw),
        include_dismissed=_bool(params.get("include_dismissed"), "include_dismissed"),
        start_at=start_at,
        end_before=end_before,
    )


SEARCH_PARAMS: Final = frozenset(
    ("q", "type", "quality", "model", "status", "start", "end", "sort", "order",
     "include_dismissed", "cursor", "limit")
)  # fmt: skip


def parse_page(params: Mapping[str, str], repeated: set[str], settings: Settings) -> Page:
    for name in params:
        if name not in SEARCH_PARAMS:
            raise BadRequest(f"unknown parameter {name!r}", field=name)
    if repeated:
        name = min(repeated)
        raise BadRequest(f"{name} is given more than once", field=name)
    query = parse_query(params)
    limit = paging.parse_limit(params.get("limit"), settings)
    raw_cursor = params.get("cursor")
    cursor = None if not raw_cursor else decode_cursor(raw_cursor, query)
    return Page(query, limit, cursor)


# --- cursors ------------------------------------------------------------------------------------


def sort_value(asset: Asset, key: SortKey) -> Any:
    """The value an asset sorts by (the SQL ``SORT_EXPRESSIONS``, in Python)."""
    if key is SortKey.DATE:
        return asset.created_at
    if key is SortKey.PROMPT:
        return asset.prompt
    if key is SortKey.QUALITY:
        return asset.quality
    return asset.model_type or ""


def encode_cursor(query: SearchQuery, asset: Asset) -> str:
    return paging.encode_cursor([query.fingerprint(), sort_value(asset, query.sort), asset.id])


def decode_cursor(raw: str, query: SearchQuery) -> tuple[Any, UUID]:
    fingerprint, value, asset_id = paging.decode_cursor(raw, shape=(str, str, str))
    if fingerprint != query.fingerprint():
        raise BadRequest("cursor belongs to a different search", field="cursor")
    key = paging.cursor_datetime(value) if query.sort is SortKey.DATE else value
    return key, paging.cursor_uuid(asset_id)


FILTER_FIELDS: Final = ("type", "quality", "model", "status", "start", "end", "include_dismissed")

STATE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "query": {"type": "string", "maxLength": MAX_QUERY_CHARS},
        "filters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "enum": ["all", "image", "video"]},
                "quality": {"type": "string", "enum": ["all", "fast", "high"]},
                "model": {"type": "string", "enum": ["all", "SDXL", "WAN", "Enhanced", "none"]},
                "status": {
                    "type": "string",
                    "enum": ["all", "completed", "generating", "failed"],
                },
                "start": {"type": "string", "nullable": True, "format": "date-time or date"},
                "end": {"type": "string", "nullable": True, "format": "date-time or date"},
                "include_dismissed": {"type": "boolean"},
            },
        },
        "sort": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {"type": "string", "enum": [k.value for k in SortKey]},
                "order": {"type": "string", "enum": ["asc", "desc"]},
            },
        },
    },
}


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object", field=name)
    return value


def _known(obj: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            raise BadRequest(f"unknown field {prefix}{key}", field=f"{prefix}{key}")


def parse_state(body: Any) -> SearchQuery:
    """Validate a saved search (every part optional; defaults as the plan's initial state)."""
    state = _object(body, "body")
    _known(state, ("query", "filters", "sort"), "")
    filters = _object(state.get("filters", {}), "filters")
    sort = _object(state.get("sort", {}), "sort")
    _known(filters, FILTER_FIELDS, "filters.")
    _known(sort, ("by", "order"), "sort.")
    params: dict[str, str | None] = {}
    names: dict[str, str] = {"q": "query", "sort": "sort.by", "order": "sort.order"}
    for source, key, target in (
        (state, "query", "q"),
        (sort, "by", "sort"),
        (sort, "order", "order"),
        *((filters, name, name) for name in FILTER_FIELDS if name != "include_dismissed"),
    ):
        value = source.get(key)
        label = names.get(target, f"filters.{target}")
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{label} must be a string", field=label)
        params[target] = value
    dismissed = filters.get("include_dismissed", False)
    if not isinstance(dismissed, bool):
        raise BadRequest(
            "filters.include_dismissed must be true or false", field="filters.include_dismissed"
        )
    params["include_dismissed"] = "true" if dismissed else "false"
    try:
        return parse_query(params)
    except BadRequest as error:
        label = names.get(error.field or "", f"filters.{error.field}")
        raise BadRequest(error.message, field=label) from None
