"""Search over the caller's assets: the plan's ``useWorkspaceSearch``, in PostgreSQL.

Semantics (the in-memory port, :mod:`reference.filter_port`, implements the same ones and is the
test oracle):

* ``q``: case-insensitive substring of the prompt (the plan's ``toLowerCase().includes``), with
  ``%``, ``_`` and ``\\`` literal. A query with a run of three letters or digits is answered with
  ``ILIKE`` (the trigram index serves it); a shorter one has no trigram to look up, so it runs as
  ``strpos(lower(prompt), lower(q))`` over the user's rows, which no trigram index is tempted by.
* ``model=none`` selects the plain model (``model_type`` NULL).
* ``start`` and ``end`` are inclusive; a date without a time is a whole UTC day (``end=2024-05-01``
  includes all of May 1st); a datetime without an offset is UTC.
* Sorting compares text in code-point order (``COLLATE "C"``), not the browser's locale-dependent
  ``localeCompare``; a NULL model sorts as ``''`` (the plan's ``modelType || ''``). Ties are broken
  by ``id`` in the same direction, so the order is total and keyset cursors are exact.
* Dismissed (``metadata->>'workspace_dismissed' = 'true'``; a missing key is not dismissed) assets
  are left out unless ``include_dismissed=true``.
* ``total`` is exact for filters (an index-only count). With a prompt query each candidate row
  must be tested, so it is exact up to ``search_count_cap`` (10,000) matches; beyond, ``total`` is
  the cap and ``total_is_exact`` is false ("10,000+").
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from aiohttp import web

from reference import paging
from reference.assets import ASSET_COLUMNS, Asset, ContentType, ModelType, Quality, Status
from reference.auth import current_user
from reference.errors import BadRequest, json_response
from reference.feature import Feature
from reference.openapi import ApiRoutes, Param
from reference.settings import Settings
from reference.typedefs import POOL, SETTINGS
from reference.urls import URLS

MAX_QUERY_CHARS: Final = 200
#: pg_trgm indexes runs of letters and digits; a pattern without three in a row has no trigram.
TRIGRAM_RUN: Final = re.compile(r"[^\W_]{3}")
ALL: Final = "all"
PLAIN_MODEL: Final = "none"
TRIGRAM_INDEXES: Final = ("idx_images_user_prompt_trgm", "idx_videos_user_prompt_trgm")
PLAIN_TRIGRAM_INDEXES: Final = ("idx_images_prompt_trgm", "idx_videos_prompt_trgm")


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

    TRIGRAM = "trigram"  # ILIKE, served by a trigram index
    SCAN = "scan"  # ILIKE without a trigram index (pg_trgm unavailable): correct, slower
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


def _bound(raw: str | None, name: str) -> tuple[datetime, bool] | None:
    """An ISO date (a whole UTC day) or datetime (UTC when naive); True when date-only."""
    if raw is None or raw == "":
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(), UTC), True
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"{name}={raw!r}: expected an ISO date (2024-05-01) or datetime "
            "(2024-05-01T12:00:00Z; encode '+' as %2B)",
            field=name,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC), False


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
    start = _bound(params.get("start"), "start")
    end = _bound(params.get("end"), "end")
    end_before: datetime | None = None
    if end is not None:
        moment, whole_day = end
        try:
            end_before = moment + (timedelta(days=1) if whole_day else timedelta(microseconds=1))
        except OverflowError:
            raise BadRequest(f"end={params.get('end')!r} is out of range", field="end") from None
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


# --- SQL ----------------------------------------------------------------------------------------
# Parameters: $1 user, $2 ILIKE pattern, $3 short needle, $4 type, $5 quality, $6 model ('' is
# the plain model), $7 status, $8 start_at, $9 end_before, $10 include_dismissed; page queries add
# $11/$12 (cursor value, id) and $13 (limit). Absent filters are NULL: the pool forces custom
# plans, so PostgreSQL folds ``$n is null`` away and each search gets the plan of its own
# literal predicate (including the partial index's dismissed predicate).

SEARCH_WHERE: Final = """
where a.user_id = $1
  and ($2::text is null or a.prompt ilike $2)
  and ($3::text is null or strpos(lower(a.prompt), lower($3)) > 0)
  and ($4::text is null or a.type = $4)
  and ($5::text is null or a.quality collate "C" = $5)
  and ($6::text is null or coalesce(a.model_type, '') collate "C" = $6)
  and ($7::text is null or a.status = $7)
  and ($8::timestamptz is null or a.created_at >= $8)
  and ($9::timestamptz is null or a.created_at < $9)
  and ($10::boolean or (a.metadata->>'workspace_dismissed') is distinct from 'true')
"""

#: Filters only: exact, from the covering partial index (an index-only scan of the user's rows).
COUNT_SQL: Final = "select count(*) from assets a" + SEARCH_WHERE  # noqa: S608 (literals only)
#: With a prompt query every candidate row is tested: count at most $11 of them.
COUNT_CAPPED_SQL: Final = (
    "select count(*) from (select 1 from assets a"  # noqa: S608 (literals only)
    + SEARCH_WHERE
    + "limit $11) capped"
)

#: Sort expressions match the 0004 b-tree indexes exactly, so an ordered page is an index range.
SORT_EXPRESSIONS: Final[Mapping[SortKey, tuple[str, str]]] = {
    SortKey.DATE: ("a.created_at", "timestamptz"),
    SortKey.PROMPT: ('a.prompt collate "C"', "text"),
    SortKey.QUALITY: ('a.quality collate "C"', "text"),
    SortKey.MODEL: ("coalesce(a.model_type, '') collate \"C\"", "text"),
}


def _page_sql(key: SortKey, order: SortOrder) -> str:
    # Only literal fragments of this module are joined here; every value is a bound parameter.
    expr, cast = SORT_EXPRESSIONS[key]
    direction, compare = ("asc", ">") if order is SortOrder.ASC else ("desc", "<")
    return (
        f"select {ASSET_COLUMNS} from assets a{SEARCH_WHERE}"  # noqa: S608
        f"  and ($11::{cast} is null or ({expr}, a.id) {compare} ($11::{cast}, $12::uuid))\n"
        f"order by {expr} {direction}, a.id {direction}\n"
        "limit $13"
    )


PAGE_SQL: Final[Mapping[tuple[SortKey, SortOrder], str]] = {
    (key, order): _page_sql(key, order) for key in SortKey for order in SortOrder
}


def like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class SearchCapabilities:
    pg_trgm: bool
    btree_gin: bool
    trigram_index: str | None  # "user_prompt" (btree_gin composite), "prompt", or None

    @property
    def text_index(self) -> bool:
        return self.trigram_index is not None

    def mode_for(self, q: str) -> TextMode | None:
        if not q:
            return None
        if TRIGRAM_RUN.search(q) is None:
            return TextMode.SHORT
        return TextMode.TRIGRAM if self.text_index else TextMode.SCAN

    def to_json(self) -> dict[str, Any]:
        limitation = None
        if not self.text_index:
            limitation = (
                "pg_trgm is not available on this server (the pgserver provider has no contrib): "
                "prompt queries scan the user's rows with ILIKE. Results are exact, but slower."
            )
        return {
            "pg_trgm": self.pg_trgm,
            "btree_gin": self.btree_gin,
            "trigram_index": self.trigram_index,
            "text_index": self.text_index,
            "short_query_chars": 3,
            "max_query_chars": MAX_QUERY_CHARS,
            "collation": "C (code-point order)",
            "limitation": limitation,
        }


CAPABILITIES_SQL: Final = """
select
    exists (select 1 from pg_extension where extname = 'pg_trgm') as pg_trgm,
    exists (select 1 from pg_extension where extname = 'btree_gin') as btree_gin,
    (select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relname = any($1::text[]) and i.indisvalid) as user_prompt_indexes,
    (select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relname = any($2::text[]) and i.indisvalid) as prompt_indexes
"""


async def detect_capabilities(conn: asyncpg.Connection) -> SearchCapabilities:
    row = await conn.fetchrow(CAPABILITIES_SQL, list(TRIGRAM_INDEXES), list(PLAIN_TRIGRAM_INDEXES))
    assert row is not None
    index = None
    if row["user_prompt_indexes"] == len(TRIGRAM_INDEXES):
        index = "user_prompt"
    elif row["prompt_indexes"] == len(PLAIN_TRIGRAM_INDEXES):
        index = "prompt"
    return SearchCapabilities(row["pg_trgm"], row["btree_gin"], index)


def search_args(user_id: UUID, query: SearchQuery, mode: TextMode | None) -> list[Any]:
    return [
        user_id,
        like_pattern(query.q) if mode in (TextMode.TRIGRAM, TextMode.SCAN) else None,
        query.q if mode is TextMode.SHORT else None,
        None if query.type is None else query.type.value,
        None if query.quality is None else query.quality.value,
        query.model,
        None if query.status is None else query.status.value,
        query.start_at,
        query.end_before,
        query.include_dismissed,
    ]


@dataclass(frozen=True, slots=True)
class SearchResult:
    assets: list[Asset]
    next_cursor: str | None
    total: int
    total_is_exact: bool
    mode: TextMode | None


async def _fetch_page(pool: asyncpg.Pool, page: Page, args: list[Any]) -> list[asyncpg.Record]:
    cursor_value, cursor_id = page.cursor if page.cursor is not None else (None, None)
    sql = PAGE_SQL[page.query.sort, page.query.order]
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            sql, *args, cursor_value, cursor_id, page.limit + 1
        )
    return rows


async def _count(pool: asyncpg.Pool, args: list[Any], cap: int | None) -> int:
    async with pool.acquire() as conn:
        if cap is None:
            total = await conn.fetchval(COUNT_SQL, *args)
        else:
            total = await conn.fetchval(COUNT_CAPPED_SQL, *args, cap + 1)
    return int(total)


async def search_assets(
    pool: asyncpg.Pool, caps: SearchCapabilities, user_id: UUID, page: Page, count_cap: int
) -> SearchResult:
    """One page and the total, on two connections at once (the total is the slower half)."""
    query = page.query
    mode = caps.mode_for(query.q)
    args = search_args(user_id, query, mode)
    cap = count_cap if mode is not None else None
    rows, total = await asyncio.gather(_fetch_page(pool, page, args), _count(pool, args, cap))
    assets = [Asset.from_record(r) for r in rows[: page.limit]]
    more = len(rows) > page.limit
    next_cursor = encode_cursor(query, assets[-1]) if more else None
    exact = cap is None or total <= cap
    return SearchResult(assets, next_cursor, total if exact else count_cap, exact, mode)


# --- persisted state ----------------------------------------------------------------------------

GET_STATE_SQL: Final = "select state, updated_at from search_state where user_id = $1"
PUT_STATE_SQL: Final = """
insert into search_state (user_id, state, updated_at) values ($1, $2, now())
on conflict (user_id) do update set state = excluded.state, updated_at = excluded.updated_at
returning updated_at
"""
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


# --- routes -------------------------------------------------------------------------------------

CAPABILITIES = web.AppKey("search_capabilities", SearchCapabilities)
routes = ApiRoutes(tag="search")


def _enum_param(name: str, values: list[str], description: str) -> Param:
    return Param(name, schema={"type": "string", "enum": values, "default": values[0]},
                 description=description)  # fmt: skip


SEARCH_PARAM_DOCS: Final = (
    Param(
        "q",
        schema={"type": "string", "maxLength": MAX_QUERY_CHARS},
        description="Case-insensitive substring of the prompt; % _ \\ are literal. "
        "Fewer than three letters in a row is answered without the trigram index.",
    ),
    _enum_param("type", ["all", "image", "video"], "Content type."),
    _enum_param("quality", ["all", "fast", "high"], "Generation quality."),
    _enum_param(
        "model", ["all", "SDXL", "WAN", "Enhanced", "none"], "Model type; none = plain model."
    ),
    _enum_param("status", ["all", "completed", "generating", "failed"], "Generation status."),
    Param(
        "start",
        description="Inclusive lower bound on created_at: ISO date (a UTC day) or datetime "
        "(UTC when no offset).",
    ),
    Param(
        "end",
        description="Inclusive upper bound on created_at; a date-only value includes that whole "
        "UTC day.",
    ),
    _enum_param("sort", [k.value for k in SortKey], "Sort key; ties broken by id."),
    _enum_param("order", ["desc", "asc"], "Sort direction (the tie-break on id follows it)."),
    Param(
        "include_dismissed",
        schema={"type": "boolean", "default": False},
        description="Include assets dismissed from the workspace.",
    ),
    Param("cursor", description="Opaque keyset cursor: next_cursor of the previous page."),
    Param(
        "limit",
        schema={"type": "integer", "minimum": 1, "default": 50},
        description="Page size, at most the service's page_size_max (200 by default).",
    ),
)


@routes.operation(
    "GET",
    "/v1/search",
    summary="Search, filter and sort the caller's images and videos (keyset pages)",
    params=SEARCH_PARAM_DOCS,
    responses={
        200: "a page of assets, the next cursor, the total (exact, or at least the count cap "
        "when total_is_exact is false), and how the prompt query was answered"
    },
)
async def search(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    repeated = {k for k in request.query if len(request.query.getall(k)) > 1}
    page = parse_page(dict(request.query), repeated, settings)
    caps = request.app[CAPABILITIES]
    result = await search_assets(
        request.app[POOL], caps, current_user(request), page, settings.search_count_cap
    )
    thumbnails = await request.app[URLS].thumbnail_urls(result.assets)
    items = []
    for asset, thumbnail_url in zip(result.assets, thumbnails, strict=True):
        item = asset.to_json()
        item["thumbnail_url"] = thumbnail_url
        items.append(item)
    return json_response(
        {
            "assets": items,
            "next_cursor": result.next_cursor,
            "total": result.total,
            "total_is_exact": result.total_is_exact,
            "text_search": None if result.mode is None else result.mode.value,
            "text_index": caps.text_index,
        }
    )


@routes.operation(
    "GET",
    "/v1/search/capabilities",
    summary="What this database can index for search, and the limitation when it cannot",
    responses={200: "capabilities"},
)
async def capabilities(request: web.Request) -> web.Response:
    return json_response(request.app[CAPABILITIES].to_json())


@routes.operation(
    "GET",
    "/v1/search/state",
    summary="The caller's saved search (query, filters, sort); defaults when none is saved",
    responses={200: "the saved state and when it was saved (null: never)"},
)
async def get_state(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(GET_STATE_SQL, current_user(request))
    if row is None:
        return json_response({"state": SearchQuery().state(), "updated_at": None})
    return json_response({"state": row["state"], "updated_at": row["updated_at"].isoformat()})


@routes.operation(
    "PUT",
    "/v1/search/state",
    summary="Save the caller's search (replaces the previous one)",
    body=STATE_SCHEMA,
    responses={200: "the state as stored (defaults filled in)"},
)
async def put_state(request: web.Request) -> web.Response:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise BadRequest("body is not valid JSON", field="body") from None
    state = parse_state(body).state()
    updated = await request.app[POOL].fetchval(PUT_STATE_SQL, current_user(request), state)
    return json_response({"state": state, "updated_at": updated.isoformat()})


async def capabilities_context(app: web.Application) -> AsyncIterator[None]:
    async with app[POOL].acquire() as conn:
        app[CAPABILITIES] = await detect_capabilities(conn)
    yield


FEATURE = Feature("search", routes, contexts=(capabilities_context,))

__all__ = [
    "CAPABILITIES", "FEATURE", "Page", "SearchCapabilities", "SearchQuery", "SortKey", "SortOrder",
    "TextMode", "encode_cursor", "like_pattern", "parse_query", "parse_state", "search_assets",
    "sort_value",
]  # fmt: skip
