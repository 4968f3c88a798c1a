"""The workspace: the plan's ``getUserAssets``, paged, and one asset with its high-res URL.

Images and videos come together from the ``assets`` view, newest first, joined to the project
title and the generating job as the plan's select does. Pages use a keyset cursor (never
OFFSET, whose cost grows with depth); a page carries thumbnail URLs, and high-res URLs only
when asked (the plan's progressive loading).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.assets import ASSET_COLUMN_COUNT, Asset
from reference.settings import Settings
from reference.urls.service import URLS, SigningFailed
from reference.web import inputs, paging
from reference.web.auth import current_user
from reference.web.errors import BadRequest, NotFound, json_response
from reference.web.feature import Feature
from reference.web.openapi import ApiRoutes, Param
from reference.web.schemas import ASSET, CURSOR, NULLABLE_STRING, STRING, array, obj
from reference.web.typedefs import GENERIC_POOL, SETTINGS
from reference.workspace.sql import (
    JOINED_COLUMN_COUNT,
    ONE_ASSET,
    PAGE_ALL,
    PAGE_ALL_AFTER,
    PAGE_SESSION,
    PAGE_SESSION_AFTER,
)

routes = ApiRoutes(tag="workspace")
WORKSPACE_ASSET: Final = {
    **ASSET,
    "properties": {
        **ASSET["properties"],
        "project_title": NULLABLE_STRING,
        "job": {"type": "object", "nullable": True},
    },
}


class WorkspaceMode(StrEnum):
    SESSION = "session"
    ALL = "all"


# Composed from constants only: no input reaches the SQL text.
INCLUDE_HIGH_RES: Final = "high_res"


@dataclass(frozen=True, slots=True)
class Cursor:
    created_at: datetime
    id: UUID

    def encode(self) -> str:
        return paging.encode_cursor([self.created_at, self.id])

    @classmethod
    def decode(cls, text: str) -> Cursor:
        created, ident = paging.decode_cursor(text, shape=(str, str))
        return cls(paging.cursor_datetime(created), paging.cursor_uuid(ident))


@dataclass(frozen=True, slots=True)
class WorkspaceQuery:
    mode: WorkspaceMode
    limit: int
    cursor: Cursor | None
    high_res: bool

    @classmethod
    def parse(cls, query: Any, settings: Settings) -> WorkspaceQuery:
        mode = inputs.choice(query.get("mode"), "mode", WorkspaceMode, WorkspaceMode.ALL)
        limit = paging.parse_limit(query.get("limit"), settings)
        raw_cursor = query.get("cursor")
        cursor = Cursor.decode(raw_cursor) if raw_cursor else None
        include = {part for part in query.get("include", "").split(",") if part}
        unknown = include - {INCLUDE_HIGH_RES}
        if unknown:
            raise BadRequest(
                f"include accepts only {INCLUDE_HIGH_RES!r}, not {sorted(unknown)}",
                field="include",
            )
        return cls(mode, limit, cursor, INCLUDE_HIGH_RES in include)


def start_of_today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def page_statement(user_id: UUID, q: WorkspaceQuery) -> tuple[str, tuple[Any, ...]]:
    """The statement of one page and its arguments (the plan benchmark explains these)."""
    # One more row than the page tells whether there is a next page.
    head = (user_id, q.limit + 1)
    c = q.cursor
    if q.mode == WorkspaceMode.SESSION:
        day = start_of_today()
        if c is None:
            return PAGE_SESSION, (*head, day)
        return PAGE_SESSION_AFTER, (*head, day, c.created_at, c.id)
    if c is None:
        return PAGE_ALL, head
    return PAGE_ALL_AFTER, (*head, c.created_at, c.id)


def workspace_item(record: asyncpg.Record, asset: Asset) -> dict[str, Any]:
    """An asset of the workspace as answered (URLs are added after): its own fields, the
    project's title and the generating job, as the plan's select joins them (``JOINED_COLUMNS``,
    read by position after the asset's own)."""
    item = asset.answer()
    project_title, job_quality, job_type, job_model_type, job_metadata = record[
        ASSET_COLUMN_COUNT : ASSET_COLUMN_COUNT + JOINED_COLUMN_COUNT
    ]
    item["project_title"] = project_title
    item["job"] = (
        None
        if job_type is None
        else {
            "quality": job_quality,
            "job_type": job_type,
            "model_type": job_model_type,
            "metadata": job_metadata,
        }
    )
    return item


async def fetch_page(pool: asyncpg.Pool, user_id: UUID, q: WorkspaceQuery) -> list[asyncpg.Record]:
    """One page, on the service's generic-plan pool: the page's plan (the user's
    ``(created_at, id)`` index in order, then the two joins by key) is the same for every user
    and every depth, and planning it per call cost as much as running it."""
    sql, args = page_statement(user_id, q)
    rows: list[asyncpg.Record] = await pool.fetch(sql, *args)
    return rows


@routes.operation(
    "GET",
    "/v1/workspace",
    summary="The caller's images and videos, newest first, one keyset page at a time",
    params=[
        Param(
            "mode",
            schema={"type": "string", "enum": ["session", "all"], "default": "all"},
            description="session: today (UTC) and not dismissed; all: everything",
        ),
        paging.LIMIT_PARAM,
        paging.CURSOR_PARAM,
        Param("include", schema={"type": "string", "enum": ["high_res"]}),
    ],
    responses={
        200: (
            "a page: assets (with thumbnail_url, and high_res_url when asked) and next_cursor",
            obj({"mode": STRING, "assets": array(WORKSPACE_ASSET), "next_cursor": CURSOR}),
        )
    },
)
async def workspace_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    q = WorkspaceQuery.parse(request.query, settings)
    records = await fetch_page(request.app[GENERIC_POOL], current_user(request), q)
    more = len(records) > q.limit
    records = records[: q.limit]
    assets = [Asset.from_record(r) for r in records]
    urls = request.app[URLS]
    thumbnails = await urls.thumbnail_urls(assets)
    items = [workspace_item(r, a) for r, a in zip(records, assets, strict=True)]
    for item, thumbnail_url in zip(items, thumbnails, strict=True):
        item["thumbnail_url"] = thumbnail_url
    if q.high_res:
        for item, high_res_url in zip(items, await urls.high_res_urls(assets), strict=True):
            item["high_res_url"] = high_res_url
    next_cursor = Cursor(assets[-1].created_at, assets[-1].id).encode() if more else None
    return json_response({"mode": q.mode.value, "assets": items, "next_cursor": next_cursor})


@routes.operation(
    "GET",
    "/v1/assets/{asset_id}",
    summary="One of the caller's assets, with its thumbnail and high-res URLs",
    params=[Param("asset_id", "path", schema={"type": "string", "format": "uuid"})],
    responses={200: ("the asset", WORKSPACE_ASSET)},
)
async def get_asset(request: web.Request) -> web.Response:
    asset_id = inputs.uuid(request.match_info["asset_id"], "asset_id")
    record = await request.app[GENERIC_POOL].fetchrow(ONE_ASSET, asset_id, current_user(request))
    if record is None:
        raise NotFound("asset not found", field="asset_id")
    asset = Asset.from_record(record)
    urls = request.app[URLS]
    (thumbnail_url,) = await urls.thumbnail_urls([asset])
    try:
        high_res_url: str | None = await urls.high_res_url(asset)
    except SigningFailed:
        high_res_url = None
    item = workspace_item(record, asset)
    item["thumbnail_url"] = thumbnail_url
    item["high_res_url"] = high_res_url
    return json_response(item)


FEATURE = Feature("workspace", routes)
