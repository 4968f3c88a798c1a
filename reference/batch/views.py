"""Batch routes: dismiss, undismiss, delete (to trash), restore, purge, download; progress,
undo and redo; the trash. The work itself is in :mod:`reference.batch.operations`.

Small operations finish within the request (200); larger ones run in the background in
chunks (202 with the operation, progress at ``GET /v1/batch/operations/{id}``). A user has one
operation running at a time: a request behind a short one waits its turn, one behind a background
operation gets 409 naming it. Background work heals itself (see :mod:`reference.batch.runner`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Final
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.batch import sql as q
from reference.batch.operations import (
    Kind,
    Operation,
    Selection,
    get_operation,
    pending_files,
)
from reference.batch.runner import BATCH_RUNNER, runner_context, trash_context
from reference.batch.zip import Member, archive_size, write_archive
from reference.settings import Settings
from reference.urls.buckets import UnsafePath, determine_bucket
from reference.urls.object_store import Located, ObjectStore, check_name
from reference.web import inputs, paging
from reference.web.auth import current_user
from reference.web.errors import BadRequest, PayloadTooLarge, json_response
from reference.web.feature import Feature
from reference.web.openapi import ERROR, ApiRoutes, Param, ResponseSpec
from reference.web.schemas import ASSET_FIELDS, CURSOR, OPERATION, STRING, array, obj
from reference.web.typedefs import POOL, SETTINGS, STORE

log = logging.getLogger(__name__)


routes = ApiRoutes(tag="batch")


BUSY: Final = (
    "another operation of the caller is running in the background (operation_id names it; "
    "a request behind a short one waits its turn instead)"
)


def selection_schema(settings: Settings) -> dict[str, Any]:
    ids = {
        "type": "array",
        "items": {"type": "string", "format": "uuid"},
        "maxItems": settings.batch_max_ids,
    }
    return {
        "type": "object",
        "description": "Assets by id, and/or every asset of the given generation jobs "
        "(metadata.job_id), in images and videos. At least one id; at most BATCH_MAX_IDS "
        "per field and in total (413 names the field).",
        "properties": {"asset_ids": ids, "job_ids": ids},
        "anyOf": [
            {"required": ["asset_ids"], "properties": {"asset_ids": {"minItems": 1}}},
            {"required": ["job_ids"], "properties": {"job_ids": {"minItems": 1}}},
        ],
        "additionalProperties": False,
    }


ANSWER: Final = obj({"operation": OPERATION})
OPERATION_RESPONSES: Final[dict[int, ResponseSpec]] = {
    200: ("finished; not_found lists ids that are absent or not the caller's", ANSWER),
    202: (
        "running in the background ('running', or 'retrying' with last_error after a failed "
        "chunk); poll its Location",
        ANSWER,
    ),
    409: (f"Idempotency-Key reused for a different request, or {BUSY}", ERROR),
    413: ("too many ids (the field is named)", ERROR),
}


# --- input -----------------------------------------------------------------------------------


def _uuid_list(body: dict[str, Any], name: str, max_ids: int) -> list[UUID]:
    raw = body.get(name, [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest(f"{name} must be an array of ids", field=name)
    if len(raw) > max_ids:
        raise PayloadTooLarge(f"{name} names {len(raw)} ids; at most {max_ids}", field=name)
    return [inputs.uuid(value, f"{name}[{index}]") for index, value in enumerate(raw)]


async def read_selection(request: web.Request, max_ids: int) -> Selection:
    body = await inputs.json_object(request)
    unknown = set(body) - {"asset_ids", "job_ids"}
    if unknown:
        raise BadRequest(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    asset_ids = _uuid_list(body, "asset_ids", max_ids)
    job_ids = _uuid_list(body, "job_ids", max_ids)
    if not asset_ids and not job_ids:
        raise BadRequest("select at least one asset or job", field="asset_ids")
    if len(asset_ids) + len(job_ids) > max_ids:
        raise PayloadTooLarge(
            f"asset_ids and job_ids name {len(asset_ids) + len(job_ids)} ids; at most {max_ids}",
            field="job_ids",
        )
    return Selection(tuple(asset_ids), tuple(str(j) for j in job_ids))


def _operation_id(request: web.Request) -> UUID:
    return inputs.uuid(request.match_info["operation_id"], "operation_id")


# --- operations ------------------------------------------------------------------------------


async def _operation_body(conn: asyncpg.Connection, op: Operation) -> dict[str, Any]:
    body = op.to_json()
    if op.kind is Kind.PURGE:
        body["files_pending"] = await pending_files(conn, op)
    return body


async def _answer(request: web.Request, op_id: UUID) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        op = await get_operation(conn, current_user(request), op_id)
        body = await _operation_body(conn, op)
    location = f"/v1/batch/operations/{op.id}"
    return json_response(
        {"operation": body}, status=202 if op.running else 200, headers={"Location": location}
    )


async def _submit(request: web.Request, kind: Kind) -> web.Response:
    settings = request.app[SETTINGS]
    selection = await read_selection(request, settings.batch_max_ids)
    key = inputs.idempotency_key(request)
    op = await request.app[BATCH_RUNNER].submit(current_user(request), kind, selection, key)
    return await _answer(request, op.id)


def _operation_route(kind: Kind, summary: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return await _submit(request, kind)

    handler.__name__ = f"batch_{kind.value}"
    routes.operation(
        "POST",
        f"/v1/batch/{kind.value}",
        summary=summary,
        params=[inputs.IDEMPOTENCY_PARAM],
        body=selection_schema,
        responses=OPERATION_RESPONSES,
    )(handler)


_operation_route(
    Kind.DISMISS,
    "Dismiss assets from the workspace (merges metadata.workspace_dismissed=true; "
    "other metadata keys are kept). Undoable.",
)
_operation_route(
    Kind.UNDISMISS,
    "Bring dismissed assets back (merges metadata.workspace_dismissed=false). Undoable.",
)
_operation_route(
    Kind.DELETE,
    "Move assets to the trash: they leave the workspace and search at once. Undoable; "
    "POST /v1/batch/restore brings them back, purge or the retention removes them.",
)
_operation_route(Kind.RESTORE, "Restore assets from the trash. Undoable.")
_operation_route(
    Kind.PURGE,
    "Remove trashed assets for good: rows first, then their files (a failed file removal is "
    "retried; files_pending counts what is left). Not undoable: undo answers 409.",
)


@routes.operation(
    "GET",
    "/v1/batch/operations/{operation_id}",
    summary="An operation and its progress (done of total); 'running' until finished",
    params=[Param("operation_id", "path", {"type": "string", "format": "uuid"})],
    responses={200: ("finished", ANSWER), 202: ("still running or retrying", ANSWER)},
)
async def get_operation_route(request: web.Request) -> web.Response:
    return await _answer(request, _operation_id(request))


@routes.operation(
    "POST",
    "/v1/batch/operations/{operation_id}/resume",
    summary="Resume an unfinished operation now, taking it over from a worker that holds its "
    "lease (a no-op when finished; unfinished operations also resume by themselves)",
    params=[Param("operation_id", "path", {"type": "string", "format": "uuid"})],
    responses={200: ("finished", ANSWER), 202: ("running again", ANSWER)},
)
async def resume_operation(request: web.Request) -> web.Response:
    op_id = _operation_id(request)
    async with request.app[POOL].acquire() as conn:
        op = await get_operation(conn, current_user(request), op_id)
    if op.running:
        request.app[BATCH_RUNNER].start(op.id, force=True)
    return await _answer(request, op.id)


@routes.operation(
    "POST",
    "/v1/batch/undo",
    summary="Undo the caller's latest operation (in order: each call undoes the next older; "
    "a call made while a short operation runs waits for it, then undoes the next)",
    responses={
        200: ("undone", ANSWER),
        202: ("undoing in the background", ANSWER),
        409: (f"nothing to undo, the latest operation is a purge, or {BUSY}", ERROR),
    },
)
async def undo(request: web.Request) -> web.Response:
    op = await request.app[BATCH_RUNNER].undo(current_user(request))
    return await _answer(request, op.id)


@routes.operation(
    "POST",
    "/v1/batch/redo",
    summary="Redo the caller's most recently undone operation (a new operation clears redo)",
    responses={
        200: ("redone", ANSWER),
        202: ("redoing in the background", ANSWER),
        409: (f"nothing to redo, or {BUSY}", ERROR),
    },
)
async def redo(request: web.Request) -> web.Response:
    op = await request.app[BATCH_RUNNER].redo(current_user(request))
    return await _answer(request, op.id)


# --- trash -----------------------------------------------------------------------------------


@routes.operation(
    "GET",
    "/v1/trash",
    summary="The caller's trash, most recently deleted first (keyset pages)",
    params=[paging.LIMIT_PARAM, paging.CURSOR_PARAM],
    responses={
        200: (
            "a page of trashed assets",
            obj(
                {
                    "assets": array(obj({**ASSET_FIELDS, "deleted_at": STRING})),
                    "next_cursor": CURSOR,
                }
            ),
        )
    },
)
async def trash(request: web.Request) -> web.Response:
    limit = paging.parse_limit(request.query.get("limit"), request.app[SETTINGS])
    after: tuple[datetime | None, UUID | None] = (None, None)
    if cursor := request.query.get("cursor"):
        deleted_at, asset_id = paging.decode_cursor(cursor, shape=(str, str))
        after = paging.cursor_datetime(deleted_at), paging.cursor_uuid(asset_id)
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(q.TRASH_PAGE, current_user(request), *after, limit + 1)
    page = rows[:limit]
    next_cursor = (
        paging.encode_cursor([page[-1]["deleted_at"], page[-1]["id"]])
        if len(rows) > limit
        else None
    )
    assets = [
        {
            "id": str(r["id"]),
            "type": r["type"],
            "prompt": r["prompt"],
            "status": r["status"],
            "quality": r["quality"],
            "model_type": r["model_type"],
            "duration_s": r["duration_s"],
            "metadata": r["metadata"] or {},
            "created_at": r["created_at"].isoformat(),
            "deleted_at": r["deleted_at"].isoformat(),
            "operation_id": None if r["operation_id"] is None else str(r["operation_id"]),
        }
        for r in page
    ]
    return json_response({"assets": assets, "next_cursor": next_cursor})


# --- download --------------------------------------------------------------------------------


def _object_keys(rows: list[asyncpg.Record]) -> list[tuple[str, str] | None]:
    """Each row's object (bucket, name); None where the store would refuse the name."""
    keys: list[tuple[str, str] | None] = []
    for r in rows:
        bucket = determine_bucket(r["type"], r["quality"], r["model_type"], r["metadata"])
        try:
            check_name(bucket, r["storage_path"])
        except UnsafePath:
            keys.append(None)
        else:
            keys.append((bucket, r["storage_path"]))
    return keys


def _intact(located: Located) -> bool:
    """The blob is there, as large as the row says (the archive's size is summed up front)."""
    try:
        return os.stat(located.blob).st_size == located.size
    except OSError:
        return False


def _members(
    rows: list[asyncpg.Record],
    keys: list[tuple[str, str] | None],
    found: dict[tuple[str, str], Located],
) -> tuple[list[Member], int]:
    """The archive's members, streamed from the objects' blobs; an asset without an object,
    or whose blob is not the size its row says, is left out and counted."""
    members: list[Member] = []
    missing = 0
    for r, key in zip(rows, keys, strict=True):
        located = found.get(key) if key is not None else None
        if located is None or not _intact(located):
            missing += 1
            continue
        suffix = PurePosixPath(r["storage_path"]).suffix or (
            ".png" if r["type"] == "image" else ".mp4"
        )
        name = f"{r['type']}s/{r['id']}{suffix}"
        members.append(Member(name, located.blob, located.size, r["created_at"]))
    return members, missing


async def _archive_members(
    store: ObjectStore, pool: asyncpg.Pool, rows: list[asyncpg.Record]
) -> tuple[list[Member], int]:
    keys = _object_keys(rows)
    found = await store.locate_many(pool, [k for k in keys if k is not None])
    return await asyncio.to_thread(_members, rows, keys, found)


@routes.operation(
    "POST",
    "/v1/batch/download",
    summary="A ZIP of the selected assets' files, streamed (zip64, stored; Content-Length "
    "known up front). Headers X-Assets-Not-Found and X-Assets-Missing-Files count what is "
    "not in it.",
    body=selection_schema,
    responses={
        200: ("the archive", {"type": "string", "format": "binary"}, "application/zip"),
        413: ("too many ids, or the archive would exceed DOWNLOAD_MAX_BYTES", ERROR),
    },
)
async def download(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    selection = await read_selection(request, settings.batch_max_ids)
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            q.SELECT_DOWNLOAD,
            current_user(request),
            list(selection.asset_ids),
            list(selection.job_ids),
        )
    if len(rows) > settings.batch_max_ids:
        raise PayloadTooLarge(
            f"the selection names {len(rows)} assets; at most {settings.batch_max_ids}",
            field="job_ids" if selection.job_ids else "asset_ids",
        )
    found = {r["id"] for r in rows}
    not_found = sum(1 for i in set(selection.asset_ids) if i not in found)
    members, missing = await _archive_members(request.app[STORE], request.app[POOL], rows)
    size = archive_size(members)
    if size > settings.download_max_bytes:
        raise PayloadTooLarge(
            f"the archive would be {size} bytes; at most {settings.download_max_bytes}",
            field="asset_ids" if selection.asset_ids else "job_ids",
            archive_bytes=size,
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": 'attachment; filename="assets.zip"',
            "X-Assets-Not-Found": str(not_found),
            "X-Assets-Missing-Files": str(missing),
        }
    )
    response.content_length = size
    await response.prepare(request)
    await write_archive(members, response.write)
    await response.write_eof()
    return response


FEATURE: Final = Feature("batch", routes, contexts=(runner_context, trash_context))
