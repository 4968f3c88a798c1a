"""Smart organization: near-duplicate sets, prompt groups, tag suggestions, and applying them.

MinHash signatures live in ``asset_signatures`` (sql/0006), computed when assets are loaded
(:func:`store_signatures`) or created (:func:`store_signatures_for`). Each process keeps, per user,
an index built from the stored signatures under the user's ``organize_versions.version``, which
triggers bump in the same transaction as any insert, delete, dismissal or prompt edit. A request
reads the version (one indexed row) and rebuilds only when it moved, from one snapshot, so every
process answers from the same database state. Dismissed and deleted assets are left out.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from aiohttp import web
from tqdm import tqdm

from reference import dedup, paging
from reference.assets import ASSET_COLUMNS, Asset
from reference.auth import current_user
from reference.batch import BATCH_RUNNER
from reference.batch_ops import Kind, Selection, create_operation, get_operation
from reference.errors import BadRequest, NotFound, json_response
from reference.feature import Feature
from reference.openapi import ApiRoutes, Param
from reference.typedefs import POOL, SETTINGS
from reference.urls import URLS

SELECT_VERSION: Final = "select version from organize_versions where user_id = $1"

#: One snapshot of what near-duplicate detection sees: the user's not-dismissed assets with
#: their stored signatures (NULL where none is stored yet).
SELECT_INDEX_ROWS: Final = """
select a.id, a.type, a.created_at, a.prompt, a.quality, a.model_type, s.text_key, s.signature
from assets a
left join asset_signatures s on s.asset_id = a.id
where a.user_id = $1
  and (a.metadata->>'workspace_dismissed') is distinct from 'true'
"""

COUNT_MISSING: Final = """
select count(*) from assets a
where not exists (select 1 from asset_signatures s where s.asset_id = a.id)
"""
SELECT_MISSING: Final = """
select a.id, a.prompt from assets a
where not exists (select 1 from asset_signatures s where s.asset_id = a.id)
"""
SELECT_PROMPTS: Final = "select a.id, a.prompt from assets a where a.id = any($1::uuid[])"

#: Stores a signature only if the prompt it was computed from is still the asset's prompt.
INSERT_SIGNATURES: Final = """
insert into asset_signatures (asset_id, user_id, text_key, signature)
select u.id, a.user_id, u.text_key, u.signature
from unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[])
    as u (id, prompt, text_key, signature)
join assets a on a.id = u.id and a.prompt = u.prompt
on conflict (asset_id) do nothing
"""

SELECT_ASSET_TAG_FIELDS: Final = """
select a.prompt, a.quality, a.model_type from assets a where a.id = $1 and a.user_id = $2
"""

ASSETS_BY_ID: Final = f"""
select {ASSET_COLUMNS} from assets a where a.user_id = $1 and a.id = any($2::uuid[])
"""  # noqa: S608 - composed from constants only

SIGNATURE_BATCH: Final = 10_000
GROUP_SAMPLE: Final = 20


# --- signatures ---------------------------------------------------------------------------------


def _signature_columns(prompts: Sequence[str]) -> tuple[list[int], list[bytes]]:
    sigs = dedup.prompt_signatures(prompts)
    return [dedup.text_key(p) for p in prompts], [dedup.signature_bytes(s) for s in sigs]


async def store_signatures_for(
    conn: asyncpg.Connection, ids: Sequence[UUID], prompts: Sequence[str]
) -> None:
    """Compute and store the signatures of assets just created (call after the insert)."""
    keys, blobs = await asyncio.to_thread(_signature_columns, prompts)
    await conn.execute(INSERT_SIGNATURES, list(ids), list(prompts), keys, blobs)


async def store_signatures(conn: asyncpg.Connection, *, progress: bool = True) -> int:
    """Compute and store a signature for every asset that lacks one; returns how many."""
    missing: int = await conn.fetchval(COUNT_MISSING)
    stored = 0
    bar = tqdm(total=missing, unit="asset", unit_scale=True, desc="minhash", disable=not progress)
    try:
        async with conn.transaction():
            cursor = await conn.cursor(SELECT_MISSING)
            while rows := await cursor.fetch(SIGNATURE_BATCH):
                ids = [r["id"] for r in rows]
                prompts = [r["prompt"] for r in rows]
                await store_signatures_for(conn, ids, prompts)
                stored += len(rows)
                bar.update(len(rows))
    finally:
        bar.close()
    return stored


# --- one user's index -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DuplicateSet:
    """Assets newest first; the first is the one to keep."""

    members: tuple[int, ...]
    sort_key: tuple[float, str]


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    members: tuple[int, ...]

    @property
    def sort_key(self) -> tuple[int, str]:
        return (-len(self.members), self.key)


@dataclass
class UserIndex:
    """One user's not-dismissed assets at one version, and what organize derives from them."""

    version: int
    ids: list[UUID]
    types: list[str]
    created: list[datetime]
    prompts: list[str]
    qualities: list[str]
    models: list[str | None]
    result: dedup.DuplicateResult
    threshold: float
    themes: tuple[str, ...]
    missing_signatures: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def duplicate_sets(self) -> list[DuplicateSet]:
        """Ascending by (newest created_at, newest id); pages walk it from the end."""
        out = []
        for members in self.result.sets:
            ordered = tuple(
                sorted(members, key=lambda i: (self.created[i], str(self.ids[i])), reverse=True)
            )
            newest = ordered[0]
            key = (self.created[newest].timestamp(), str(self.ids[newest]))
            out.append(DuplicateSet(ordered, key))
        out.sort(key=lambda s: s.sort_key)
        return out

    @cached_property
    def duplicate_keys(self) -> list[tuple[float, str]]:
        return [s.sort_key for s in self.duplicate_sets]

    def redundant(self) -> list[int]:
        """Every member of every duplicate set except its newest."""
        return [i for s in self.duplicate_sets for i in s.members[1:]]

    def _newest_first(self, members: Sequence[int]) -> tuple[int, ...]:
        return tuple(
            sorted(members, key=lambda i: (self.created[i], str(self.ids[i])), reverse=True)
        )

    @cached_property
    def prompt_groups(self) -> list[Group]:
        """The plan's ``autoGroupByPrompt``: one group per ``extractPromptKey``."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, prompt in enumerate(self.prompts):
            groups[dedup.plan_prompt_key(prompt)].append(i)
        out = [Group(k, self._newest_first(m)) for k, m in groups.items()]
        out.sort(key=lambda g: g.sort_key)
        return out

    @cached_property
    def cluster_groups(self) -> list[Group]:
        """Near-duplicate clusters as groups: every asset in one, singletons included."""
        seen: set[int] = set()
        out: list[Group] = []
        for s in self.duplicate_sets:
            seen.update(s.members)
            out.append(Group(str(self.ids[s.members[0]]), s.members))
        out.extend(Group(str(self.ids[i]), (i,)) for i in range(len(self.ids)) if i not in seen)
        out.sort(key=lambda g: g.sort_key)
        return out

    def tags(self, i: int) -> list[str]:
        return dedup.plan_suggest_tags(
            self.prompts[i], self.qualities[i], self.models[i], self.themes
        )

    @cached_property
    def tag_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for i in range(len(self.ids)):
            counts.update(self.tags(i))
        return dict(counts.most_common())

    @cached_property
    def newest_first(self) -> list[int]:
        return self._newest_first(range(len(self.ids)))  # type: ignore[return-value]

    def asset_json(self, i: int) -> dict[str, Any]:
        return {
            "id": str(self.ids[i]),
            "type": self.types[i],
            "created_at": self.created[i].isoformat(),
            "prompt": self.prompts[i],
        }


def build_index(
    rows: Sequence[asyncpg.Record],
    version: int,
    threshold: float = dedup.DEFAULT_THRESHOLD,
    themes: tuple[str, ...] = dedup.DEFAULT_THEMES,
) -> UserIndex:
    """Banding over the stored signatures and exact confirmation (CPU work: run in a thread).

    Rows without a stored signature (added since the last :func:`store_signatures`) are hashed
    here; the caller stores them.
    """
    started = time.perf_counter()
    n = len(rows)
    ids = [r["id"] for r in rows]
    prompts = [r["prompt"] for r in rows]
    blobs: list[bytes] = [r["signature"] or b"" for r in rows]
    keys: list[int] = [r["text_key"] if r["text_key"] is not None else 0 for r in rows]
    missing = [i for i in range(n) if not blobs[i]]
    if missing:
        fresh = dedup.prompt_signatures([prompts[i] for i in missing])
        for j, i in enumerate(missing):
            blobs[i] = dedup.signature_bytes(fresh[j])
            keys[i] = dedup.text_key(prompts[i])
    sigs = dedup.signatures_from_bytes(blobs)
    decoded = time.perf_counter()
    result = dedup.find_duplicates(keys, sigs, lambda i: dedup.shingles(prompts[i]), threshold)
    done = time.perf_counter()
    index = UserIndex(
        version=version,
        ids=ids,
        types=[r["type"] for r in rows],
        created=[r["created_at"] for r in rows],
        prompts=prompts,
        qualities=[r["quality"] for r in rows],
        models=[r["model_type"] for r in rows],
        result=result,
        threshold=threshold,
        themes=themes,
        missing_signatures=missing,
        timings={"decode_s": decoded - started, "lsh_confirm_s": done - decoded},
    )
    _ = index.duplicate_sets
    return index


class OrganizeIndexes:
    """Per-process cache of users' indexes, each valid for one database version."""

    def __init__(self, pool: asyncpg.Pool, threshold: float, themes: tuple[str, ...],
                 capacity: int) -> None:  # fmt: skip
        self.pool = pool
        self.threshold = threshold
        self.themes = themes
        self.capacity = capacity
        self._cache: OrderedDict[UUID, UserIndex] = OrderedDict()
        self._locks: dict[UUID, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.builds = 0

    async def version(self, conn: asyncpg.Connection, user_id: UUID) -> int:
        value = await conn.fetchval(SELECT_VERSION, user_id)
        return 0 if value is None else int(value)

    async def get(self, user_id: UUID) -> UserIndex:
        async with self.pool.acquire() as conn:
            version = await self.version(conn, user_id)
        cached = self._cache.get(user_id)
        if cached is not None and cached.version == version:
            self._cache.move_to_end(user_id)
            return cached
        async with self._locks[user_id]:
            cached = self._cache.get(user_id)
            if cached is not None and cached.version == version:
                return cached
            index = await self.rebuild(user_id)
            self._cache[user_id] = index
            self._cache.move_to_end(user_id)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return index

    async def rebuild(self, user_id: UUID) -> UserIndex:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                version = await self.version(conn, user_id)
                rows = await conn.fetch(SELECT_INDEX_ROWS, user_id)
            fetched = time.perf_counter()
            index = await asyncio.to_thread(build_index, rows, version, self.threshold, self.themes)
            if index.missing_signatures:
                miss = index.missing_signatures
                await store_signatures_for(
                    conn, [index.ids[i] for i in miss], [index.prompts[i] for i in miss]
                )
        index.timings["fetch_s"] = fetched - started
        index.timings["total_s"] = time.perf_counter() - started
        self.builds += 1
        return index


ORGANIZE = web.AppKey("organize", OrganizeIndexes)


async def organize_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[ORGANIZE] = OrganizeIndexes(
        app[POOL],
        settings.organize_threshold,
        settings.organize_themes,
        settings.organize_cache_users,
    )
    yield


# --- HTTP --------------------------------------------------------------------------------------

routes = ApiRoutes(tag="organize")


def _page(request: web.Request, shape: tuple[type, ...]) -> tuple[int, tuple[Any, ...] | None]:
    """The page size and, past the first page, the cursor's items (of the JSON types in shape)."""
    limit = paging.parse_limit(request.query.get("limit"), request.app[SETTINGS])
    raw = request.query.get("cursor")
    return limit, tuple(paging.decode_cursor(raw, shape=shape)) if raw else None


def _uuid(raw: str, name: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a UUID", field=name) from None


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
    responses={200: "a page of duplicate sets"},
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
        "total_assets": sum(len(s.members) for s in sets),
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
    responses={200: "a page of groups"},
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
    responses={200: "tags"},
)
async def tags(request: web.Request) -> web.Response:
    user = current_user(request)
    themes = request.app[SETTINGS].organize_themes
    raw_id = request.query.get("asset_id")
    if raw_id is not None:
        asset_id = _uuid(raw_id, "asset_id")
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
            "assets_to_dismiss": len(index.redundant()),
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
    responses={200: "suggestions"},
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
    responses={200: "what was dismissed"},
)
async def apply(request: web.Request) -> web.Response:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise BadRequest("body must be JSON", field="body") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", field="body")
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
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
    await request.app[BATCH_RUNNER].drive(op)
    async with pool.acquire() as conn:
        op = await get_operation(conn, user, op.id)
    answer["operation"] = op.to_json()
    return json_response(answer, status=202 if op.running else 200)


FEATURE = Feature("organize", routes, contexts=(organize_context,))
