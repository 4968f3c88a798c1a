"""The search routes: ``/v1/search``, its capabilities and the persisted search state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from reference.search.query import (
    MAX_QUERY_CHARS,
    STATE_SCHEMA,
    SearchQuery,
    SortKey,
    parse_page,
    parse_state,
)
from reference.search.service import (
    SearchCapabilities,
    detect_capabilities,
    search_assets,
    serial_budget,
)
from reference.search.sql import GET_STATE_SQL, PUT_STATE_SQL
from reference.search.trigrams import TrigramStatistics
from reference.urls.service import URLS
from reference.web import inputs, paging
from reference.web.auth import current_user
from reference.web.errors import json_response
from reference.web.feature import Feature
from reference.web.metrics import METRICS
from reference.web.openapi import ApiRoutes, Param
from reference.web.schemas import ASSET, CURSOR, NULLABLE_STRING, array, obj
from reference.web.typedefs import POOL, SETTINGS

# --- routes -------------------------------------------------------------------------------------

CAPABILITIES = web.AppKey("search_capabilities", SearchCapabilities)
TRIGRAMS = web.AppKey("search_trigrams", TrigramStatistics)
routes = ApiRoutes(tag="search")
SAVED_STATE: Final = obj({"state": {"type": "object"}, "updated_at": NULLABLE_STRING})


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
    Param("limit", schema=paging.limit_schema, description="Page size."),
)


@routes.operation(
    "GET",
    "/v1/search",
    summary="Search, filter and sort the caller's images and videos (keyset pages)",
    params=SEARCH_PARAM_DOCS,
    responses={
        200: (
            "a page of assets, the next cursor, the total (exact up to the count cap; beyond "
            "it the cap, with total_is_exact false: at least that many), and how the prompt "
            "query was answered",
            obj(
                {
                    "assets": array(ASSET),
                    "next_cursor": CURSOR,
                    "total": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Matches, counted up to SEARCH_COUNT_CAP (default 1,000): "
                        "exact when total_is_exact is true; otherwise the cap, a lower bound. "
                        "The pages still reach every match.",
                    },
                    "total_is_exact": {
                        "type": "boolean",
                        "description": 'false: more than total assets match (show it as "1,000+")',
                    },
                    "text_search": NULLABLE_STRING,
                    "text_index": {"type": "boolean"},
                }
            ),
        )
    },
)
async def search(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    repeated = {k for k in request.query if len(request.query.getall(k)) > 1}
    page = parse_page(dict(request.query), repeated, settings)
    caps = request.app[CAPABILITIES]
    result = await search_assets(
        request.app[POOL],
        caps,
        current_user(request),
        page,
        settings.search_count_cap,
        serial_budget(settings),
        request.app[TRIGRAMS].current,
    )
    if result.parallel_scan and result.mode is not None:
        request.app[METRICS].search_parallel_scans.labels(result.mode.value).inc()
    thumbnails = await request.app[URLS].thumbnail_urls(result.assets)
    items = [a.answer() for a in result.assets]
    for item, thumbnail_url in zip(items, thumbnails, strict=True):
        item["thumbnail_url"] = thumbnail_url
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
    responses={200: ("capabilities", obj({"text_index": {"type": "boolean"}}))},
)
async def capabilities(request: web.Request) -> web.Response:
    return json_response(request.app[CAPABILITIES].to_json())


@routes.operation(
    "GET",
    "/v1/search/state",
    summary="The caller's saved search (query, filters, sort); defaults when none is saved",
    responses={200: ("the saved state and when it was saved (null: never)", SAVED_STATE)},
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
    responses={200: ("the state as stored (defaults filled in)", SAVED_STATE)},
)
async def put_state(request: web.Request) -> web.Response:
    state = parse_state(await inputs.json_object(request)).state()
    updated = await request.app[POOL].fetchval(PUT_STATE_SQL, current_user(request), state)
    return json_response({"state": state, "updated_at": updated.isoformat()})


async def capabilities_context(app: web.Application) -> AsyncIterator[None]:
    """What the database can index, and (with a trigram index) the sample of trigram counts
    that picks which trigrams of a query it looks up, refreshed while the service runs."""
    async with app[POOL].acquire() as conn:
        caps = await detect_capabilities(conn)
    app[CAPABILITIES] = caps
    app[TRIGRAMS] = statistics = TrigramStatistics()
    if not caps.text_index:
        yield
        return
    async with statistics.refreshing(app[POOL]):
        yield


FEATURE = Feature("search", routes, contexts=(capabilities_context,))
