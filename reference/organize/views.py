"""The organize routes: duplicate sets, prompt groups, tag suggestions, and applying them."""

from __future__ import annotations

import bisect
from typing import Any, Final
from uuid import UUID

from aiohttp import web

from reference.assets import Asset
from reference.batch.operations import Kind, Selection, create_operation, get_operation
from reference.batch.runner import BATCH_RUNNER
from reference.organize import dedup
from reference.organize.index import (
    GROUP_SAMPLE,
    ORGANIZE,
    DuplicateSet,
    UserIndex,
    organize_context,
)
from reference.organize.sql import ASSETS_BY_ID, SELECT_ASSET_TAG_FIELDS
from reference.urls.service import URLS
from reference.web import inputs, paging
from reference.web.auth import current_user
from reference.web.errors import BadRequest, NotFound, json_response
from reference.web.feature import Feature
from reference.web.openapi import ERROR, ApiRoutes, Param
from reference.web.schemas import CURSOR, INTEGER, OPERATION, STRING, UUID_STRING, array, obj
from reference.web.typedefs import POOL, SETTINGS

# --- HTTP --------------------------------------------------------------------------------------

routes = ApiRoutes(tag="organize")
NUMBER: Final = {"type": "number"}
OBJECT: Final = {"type": "object"}
APPLIED: Final = obj(
    {
        "action": STRING,
        "sets": INTEGER,
        "dismissed": INTEGER,
        "asset_ids": array(UUID_STRING),
        "operation": {**OPERATION, "nullable": True},
    }
)


def _page(request: web.Request, shape: tuple[type, ...]) -> tuple[int, tuple[Any, ...] | None]:
    """The page size and, past the first page, the cursor's items (of the JSON types in shape)."""
    limit = paging.parse_limit(request.query.get("limit"), request.app[SETTINGS])
    raw = request.query.get("cursor")
    return limit, tuple(paging.decode_cursor(raw, shape=shape)) if raw else None


def _set_json(index: UserIndex, s: DuplicateSet) -> dict[str, Any]:
    return {
        "keep": str(index.ids[s.members[0]]),
        "size": len(s.members),
        "newest_at": index.created[s.members[0]].isoformat(),
        "assets": [index.asset_json(i) for i in s.members],
    }


async def _attach_thumbnails(request: web.Request, sets: list[dict[str, Any]]) -> None:
    """Give each asset of a page of sets its thumbnail URL (one query, one signing batch)."""
    members = [asset for s in sets for asset in s["assets"]]
    if not members:
        return
    ids = [UUID(asset["id"]) for asset in members]
    rows = await request.app[POOL].fetch(ASSETS_BY_ID, current_user(request), ids)
    by_id = {row["id"]: Asset.from_record(row) for row in rows}
    found = [by_id[i] for i in ids if i in by_id]
    urls = dict(
        zip((a.id for a in found), await request.app[URLS].thumbnail_urls(found), strict=True)
    )
    for asset, asset_id in zip(members, ids, strict=True):
        asset["thumbnail_url"] = urls.get(asset_id)


@routes.operation(
    "GET",
    "/v1/organize/duplicates",
    summary="Near-duplicate sets (newest set first); each set's first asset is the one to keep",
    params=[paging.LIMIT_PARAM, paging.CURSOR_PARAM],
    responses={
        200: (
            "a page of duplicate sets",
            obj(
                {
                    "threshold": NUMBER,
                    "version": INTEGER,
                    "total_sets": INTEGER,
                    "total_assets": INTEGER,
                    "sets": array(
                        obj({"keep": UUID_STRING, "size": INTEGER, "assets": array(OBJECT)})
                    ),
                    "next_cursor": CURSOR,
                }
            ),
        )
    },
)
async def duplicates(request: web.Request) -> web.Response:
    limit, cursor = _page(request, (float, str))
    index = await request.app[ORGANIZE].get(current_user(request))
    sets, keys = index.duplicate_sets, index.duplicate_keys
    end = len(sets) if cursor is None else bisect.bisect_left(keys, cursor)
    start = max(0, end - limit)
    page = [_set_json(index, s) for s in reversed(sets[start:end])]
    await _attach_thumbnails(request, page)
    return json_response({
        "threshold": index.threshold,
        "version": index.version,
        "total_sets": len(sets),
        "total_assets": index.duplicate_assets,
        "sets": page,
        "next_cursor": paging.encode_cursor(keys[start]) if start > 0 else None,
    })  # fmt: skip


GROUPINGS: Final = ("prompt", "duplicates")


@routes.operation(
    "GET",
    "/v1/organize/groups",
    summary="Groups of assets, largest first: by the plan's prompt key or by near-duplicate set",
    params=[
        Param(
            "by", schema={"type": "string", "enum": list(GROUPINGS)}, description="default prompt"
        ),
        paging.LIMIT_PARAM,
        paging.CURSOR_PARAM,
    ],
    responses={
        200: (
            "a page of groups",
            obj(
                {
                    "by": STRING,
                    "version": INTEGER,
                    "total_groups": INTEGER,
                    "groups": array(
                        obj({"key": STRING, "count": INTEGER, "asset_ids": array(UUID_STRING)})
                    ),
                    "next_cursor": CURSOR,
                }
            ),
        )
    },
)
async def groups(request: web.Request) -> web.Response:
    by = request.query.get("by", "prompt")
    if by not in GROUPINGS:
        raise BadRequest(f"by must be one of {', '.join(GROUPINGS)}", field="by")
    limit, cursor = _page(request, (int, str))
    index = await request.app[ORGANIZE].get(current_user(request))
    found = index.prompt_groups if by == "prompt" else index.cluster_groups
    start = 0
    if cursor is not None:
        start = bisect.bisect_right(found, cursor, key=lambda g: g.sort_key)
    page = found[start : start + limit]
    more = start + limit < len(found)
    return json_response({
        "by": by,
        "version": index.version,
        "total_groups": len(found),
        "groups": [
            {
                "key": g.key,
                "count": len(g.members),
                "asset_ids": [str(index.ids[i]) for i in g.members[:GROUP_SAMPLE]],
            }
            for g in page
        ],
        "next_cursor": paging.encode_cursor(page[-1].sort_key) if more and page else None,
    })  # fmt: skip


@routes.operation(
    "GET",
    "/v1/organize/tags",
    summary="The plan's tag suggestions (themes, quality, model) for one asset or a page of them",
    params=[
        Param("asset_id", description="one asset (any state)"),
        paging.LIMIT_PARAM,
        paging.CURSOR_PARAM,
    ],
    responses={
        200: (
            "one asset's tags, or a page of assets' tags with the counts",
            {
                "anyOf": [
                    obj({"asset_id": UUID_STRING, "tags": array(STRING)}),
                    obj(
                        {
                            "version": INTEGER,
                            "themes": array(STRING),
                            "counts": OBJECT,
                            "assets": array(obj({"asset_id": UUID_STRING, "tags": array(STRING)})),
                            "next_cursor": CURSOR,
                        }
                    ),
                ]
            },
        )
    },
)
async def tags(request: web.Request) -> web.Response:
    user = current_user(request)
    themes = request.app[SETTINGS].organize_themes
    raw_id = request.query.get("asset_id")
    if raw_id is not None:
        asset_id = inputs.uuid(raw_id, "asset_id")
        async with request.app[POOL].acquire() as conn:
            row = await conn.fetchrow(SELECT_ASSET_TAG_FIELDS, asset_id, user)
        if row is None:
            raise NotFound("asset not found", field="asset_id")
        suggested = dedup.plan_suggest_tags(
            row["prompt"], row["quality"], row["model_type"], themes
        )
        return json_response({"asset_id": str(asset_id), "tags": suggested})
    limit, cursor = _page(request, (int,))
    index = await request.app[ORGANIZE].get(user)
    order = index.newest_first
    start = 0 if cursor is None else cursor[0]
    if not 0 <= start <= len(order):
        raise BadRequest("cursor is out of range", field="cursor")
    end = start + limit
    page = order[start:end]
    return json_response({
        "version": index.version,
        "themes": list(themes),
        "counts": index.tag_counts,
        "assets": [{"asset_id": str(index.ids[i]), "tags": index.tags(i)} for i in page],
        "next_cursor": paging.encode_cursor([end]) if end < len(order) else None,
    })  # fmt: skip


def suggestions_of(index: UserIndex) -> list[dict[str, Any]]:
    """The plan's ``SmartSuggestions``, with counts and the action that applies each."""
    out: list[dict[str, Any]] = []
    group_count = len(index.prompt_groups)
    if group_count > 1:
        out.append({
            "type": "group",
            "title": "Group similar prompts",
            "description": f"{group_count} groups found",
            "count": group_count,
            "action": None,
            "see": "/v1/organize/groups?by=prompt",
        })  # fmt: skip
    sets = len(index.duplicate_sets)
    if sets > 0:
        out.append({
            "type": "duplicates",
            "title": "Remove duplicates",
            "description": f"{sets} duplicate sets found",
            "count": sets,
            "assets_to_dismiss": index.duplicate_assets - sets,  # all but the newest of each
            "action": "dismiss_duplicates",
            "see": "/v1/organize/duplicates",
        })  # fmt: skip
    if len(index) > 0:
        out.append({
            "type": "tags",
            "title": "Add smart tags",
            "description": "AI-powered tag suggestions",
            "count": len(index.tag_counts),
            "tags": index.tag_counts,
            "action": None,
            "see": "/v1/organize/tags",
        })  # fmt: skip
    return out


@routes.operation(
    "GET",
    "/v1/organize/suggestions",
    summary="The plan's smart suggestions: groups found, duplicate sets found, tags, with counts",
    responses={
        200: (
            "suggestions",
            obj(
                {
                    "version": INTEGER,
                    "assets": INTEGER,
                    "threshold": NUMBER,
                    "suggestions": array(obj({"type": STRING, "count": INTEGER})),
                }
            ),
        )
    },
)
async def suggestions(request: web.Request) -> web.Response:
    index = await request.app[ORGANIZE].get(current_user(request))
    return json_response({
        "version": index.version,
        "assets": len(index),
        "threshold": index.threshold,
        "suggestions": suggestions_of(index),
    })  # fmt: skip


ACTIONS: Final = ("dismiss_duplicates", "remove_duplicates")


@routes.operation(
    "POST",
    "/v1/organize/apply",
    summary="Apply a suggestion: dismiss_duplicates dismisses all but the newest of each set",
    body={
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {"type": "string", "enum": list(ACTIONS)},
        },
    },
    params=[inputs.IDEMPOTENCY_PARAM],
    responses={
        200: ("what was dismissed", APPLIED),
        202: ("dismissing in the background: the operation's progress", APPLIED),
        409: ("Idempotency-Key reused for a different request", ERROR),
    },
)
async def apply(request: web.Request) -> web.Response:
    body = await inputs.json_object(request)
    key = inputs.idempotency_key(request)
    action = body.get("action")
    if action not in ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(ACTIONS)}", field="action")
    user = current_user(request)
    index = await request.app[ORGANIZE].get(user)
    targets = tuple(index.ids[i] for i in index.redundant())
    answer: dict[str, Any] = {
        "action": "dismiss_duplicates",
        "sets": len(index.duplicate_sets),
        "dismissed": len(targets),
        "asset_ids": sorted(str(i) for i in targets),
        "operation": None,
    }
    if not targets:
        return json_response(answer)
    # Through the batch operations, so the suggestion is recorded and can be undone.
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        op, _ = await create_operation(
            conn,
            user,
            Kind.DISMISS,
            Selection(asset_ids=targets),
            max_ids=max(request.app[SETTINGS].batch_max_ids, len(targets)),
            idempotency_key=key,
        )
    await request.app[BATCH_RUNNER].drive(op)
    async with pool.acquire() as conn:
        op = await get_operation(conn, user, op.id)
    answer["operation"] = op.to_json()
    return json_response(answer, status=202 if op.running else 200)


FEATURE = Feature("organize", routes, contexts=(organize_context,))
