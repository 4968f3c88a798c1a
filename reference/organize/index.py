"""Smart organization: near-duplicate sets, prompt groups, tag suggestions, and applying them.

MinHash signatures live in ``asset_signatures`` (sql/0006), computed when assets are loaded
(:func:`store_signatures`) or created (:func:`store_signatures_for`). Each process keeps, per user,
an index built from the stored signatures under the user's ``organize_versions.version``, which
triggers bump in the same transaction as any insert, delete, dismissal or prompt edit. A request
reads the version (one indexed row) and rebuilds only when it moved, from one snapshot, so every
process answers from the same database state. Dismissed and deleted assets are left out.

A build is a background task, one per user and version, that outlives the request that started
it: the snapshot is streamed through a server-side cursor (each fetch is a statement of its own,
so a million assets never meet the statement timeout) and banded in a thread. A request waits
for it up to ``ORGANIZE_BUILD_WAIT_MS``; past that it is answered 503 with ``Retry-After``
(:class:`IndexBuilding`) while the build goes on, and a later request finds the index ready.

With ``REDIS_URL`` the LSH index itself is datasketch's ``MinHashLSH`` on Redis storage, one per
(user, version) and keyed by asset id: the first worker to need it fills it, the others read its
buckets instead of inserting, and a newer version's index replaces the older one. Redis being
unreachable costs only that sharing: the index is then built in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Final
from uuid import UUID

import asyncpg
import redis
from aiohttp import web
from redis.connection import parse_url
from tqdm import tqdm

from reference.db.redis_keys import unlink_all
from reference.organize import dedup
from reference.organize.sql import (
    COUNT_MISSING,
    INSERT_SIGNATURES,
    LOCK_PROMPTS_NOWAIT,
    SELECT_DISTINCT_PROMPTS,
    SELECT_INDEX_ROWS,
    SELECT_MISSING,
    SELECT_VERSION,
    SIGNATURE_COLUMNS,
)
from reference.web.errors import Unavailable
from reference.web.typedefs import POOL, SETTINGS

SIGNATURE_BATCH: Final = 10_000
#: Seconds the bulk backfill waits for the assets' prompts to be free of other locks (an index
#: build beside it holds them for its whole run: about a minute at 1,000,000 assets), and how
#: often it asks.
SIGNATURES_LOCK_WAIT_S: Final = 600.0
LOCK_RETRY_S: Final = 0.1
#: Rows per fetch of the index snapshot's cursor.
SNAPSHOT_BATCH: Final = 20_000
#: Seconds a client is told to wait while its index is being built.
BUILD_RETRY_AFTER_S: Final = 2
GROUP_SAMPLE: Final = 20
REDIS_TIMEOUT_S: Final = 5.0

log = logging.getLogger(__name__)


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


PromptSignatures = dict[str, tuple[int, bytes]]


def signature_pool(prompts: Sequence[str]) -> PromptSignatures:
    """``prompt -> (text_key, signature bytes)`` for distinct prompts (CPU work)."""
    keys, blobs = _signature_columns(prompts)
    return dict(zip(prompts, zip(keys, blobs, strict=True), strict=True))


async def distinct_prompt_signatures(
    conn: asyncpg.Connection, *, progress: bool = True
) -> PromptSignatures:
    """The signature of every distinct prompt the assets have. The prompts are read in one
    statement, and hashed with no transaction open: a ``CREATE INDEX CONCURRENTLY`` running
    meanwhile waits for no snapshot of this."""
    prompts = [r[0] for r in await conn.fetch(SELECT_DISTINCT_PROMPTS)]
    pool: PromptSignatures = {}
    bar = tqdm(total=len(prompts), unit="prompt", unit_scale=True,
               desc="minhash (distinct prompts)", disable=not progress)  # fmt: skip
    try:
        for start in range(0, len(prompts), SIGNATURE_BATCH):
            chunk = prompts[start : start + SIGNATURE_BATCH]
            pool.update(await asyncio.to_thread(signature_pool, chunk))
            bar.update(len(chunk))
    finally:
        bar.close()
    return pool


@contextlib.asynccontextmanager
async def _prompts_locked(conn: asyncpg.Connection, wait_s: float) -> AsyncIterator[None]:
    """A transaction holding the assets' prompts against change (SHARE on both tables).

    The lock is asked for without waiting, again every ``LOCK_RETRY_S`` in a new transaction:
    a session queued for a table lock holds a snapshot, and a ``CREATE INDEX CONCURRENTLY`` that
    holds the table waits, near its end, for every older snapshot, so queuing behind one
    deadlocks with it (as a fresh load, which stores signatures beside the index migrations,
    did). Past ``wait_s`` seconds without the lock: :class:`TimeoutError`.
    """
    deadline = time.monotonic() + wait_s
    while True:
        locked = False
        try:
            async with conn.transaction():
                await conn.execute(LOCK_PROMPTS_NOWAIT)
                locked = True
                yield
            return
        except asyncpg.LockNotAvailableError:
            if locked:
                raise  # the work's own, not the lock's
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"images and videos stayed locked for {wait_s:.0f} s: signatures not stored"
                ) from None
        await asyncio.sleep(LOCK_RETRY_S)


async def store_signatures(
    conn: asyncpg.Connection,
    *,
    progress: bool = True,
    known: PromptSignatures | None = None,
    lock_wait_s: float = SIGNATURES_LOCK_WAIT_S,
) -> int:
    """Compute and store a signature for every asset that lacks one; returns how many.

    Each distinct prompt is hashed once (``known`` may hold some already), and the rows are
    written with COPY while the assets' prompts are locked against change (waiting at most
    ``lock_wait_s`` for that lock).
    """
    missing: int = await conn.fetchval(COUNT_MISSING)
    pool: PromptSignatures = dict(known or {})
    stored = 0
    bar = tqdm(total=missing, unit="asset", unit_scale=True, desc="signatures",
               disable=not progress)  # fmt: skip
    try:
        async with _prompts_locked(conn, lock_wait_s):
            cursor = await conn.cursor(SELECT_MISSING)
            while rows := await cursor.fetch(SIGNATURE_BATCH):
                new = list({r["prompt"] for r in rows if r["prompt"] not in pool})
                if new:
                    pool.update(await asyncio.to_thread(signature_pool, new))
                records = [(r["id"], r["user_id"], *pool[r["prompt"]]) for r in rows]
                await conn.copy_records_to_table(
                    "asset_signatures", records=records, columns=SIGNATURE_COLUMNS
                )
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
            ordered = self._newest_first(members)
            newest = ordered[0]
            key = (self.created[newest].timestamp(), str(self.ids[newest]))
            out.append(DuplicateSet(ordered, key))
        out.sort(key=lambda s: s.sort_key)
        return out

    @cached_property
    def duplicate_keys(self) -> list[tuple[float, str]]:
        return [s.sort_key for s in self.duplicate_sets]

    @cached_property
    def duplicate_assets(self) -> int:
        """How many assets the sets hold (counted once: 194,602 sets at 1M took 20 ms)."""
        return sum(len(s.members) for s in self.duplicate_sets)

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
    def newest_first(self) -> tuple[int, ...]:
        return self._newest_first(range(len(self.ids)))

    def asset_json(self, i: int) -> dict[str, Any]:
        return {
            "id": str(self.ids[i]),
            "type": self.types[i],
            "created_at": self.created[i].isoformat(),
            "prompt": self.prompts[i],
        }


def redis_lsh_config(url: str, basename: str) -> dict[str, Any]:
    """datasketch's ``storage_config`` for an index on the Redis at ``url``."""
    params = {**parse_url(url), "socket_timeout": REDIS_TIMEOUT_S}  # type: ignore[no-untyped-call]
    return {"type": "redis", "basename": basename.encode(), "redis": params}


class SharedLsh:
    """Users' LSH indexes on Redis, one per (user, version), shared by every worker."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = f"{prefix}lsh:"
        self.client = redis.Redis(**redis_lsh_config(url, "")["redis"])

    def basename(self, user_id: UUID, version: int) -> str:
        return f"{self.prefix}{user_id}:{version}"

    def open(self, user_id: UUID, version: int) -> tuple[Any, bool]:
        """The index and whether it is already filled."""
        name = self.basename(user_id, version)
        lsh = dedup.new_lsh(redis_lsh_config(self.url, name))
        return lsh, bool(self.client.exists(f"{name}:filled"))

    def filled(self, user_id: UUID, version: int) -> None:
        """Mark this version's index complete; drop the user's older ones."""
        name = self.basename(user_id, version)
        self.client.set(f"{name}:filled", 1)
        unlink_all(
            self.client,
            [
                key
                for key in self.client.scan_iter(match=f"{self.prefix}{user_id}:*", count=10_000)
                if not key.startswith(f"{name}_".encode()) and key != f"{name}:filled".encode()
            ],
        )

    def close(self) -> None:
        self.client.close()


def _duplicates(
    user_id: UUID,
    version: int,
    ids: Sequence[UUID],
    keys: Sequence[int],
    sigs: dedup.Signatures,
    prompts: Sequence[str],
    threshold: float,
    shared: SharedLsh | None,
) -> dedup.DuplicateResult:
    def shingles_of(i: int) -> frozenset[str]:
        return dedup.shingles(prompts[i])

    if shared is not None:
        try:
            lsh, filled = shared.open(user_id, version)
            names = [i.bytes for i in ids]
            result = dedup.find_duplicates(
                keys, sigs, shingles_of, threshold, lsh=lsh, names=names, filled=filled
            )
            if not filled:
                shared.filled(user_id, version)
            return result
        except (redis.RedisError, OSError) as exc:
            log.warning("organize: redis unavailable (%s); LSH index in memory", exc)
    return dedup.find_duplicates(keys, sigs, shingles_of, threshold)


def build_index(
    rows: Sequence[asyncpg.Record],
    version: int,
    threshold: float = dedup.DEFAULT_THRESHOLD,
    themes: tuple[str, ...] = dedup.DEFAULT_THEMES,
    user_id: UUID | None = None,
    shared: SharedLsh | None = None,
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
    result = _duplicates(
        user_id or UUID(int=0), version, ids, keys, sigs, prompts, threshold, shared
    )
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
    # Derived here, in the build's thread, rather than by the first request that reads them.
    _ = index.duplicate_keys, index.duplicate_assets
    return index


class IndexBuilding(Unavailable):
    """The user's index is being built in the background: retry after ``retry_after_s``."""

    code = "organize_index_building"


class OrganizeIndexes:
    """Per-process cache of users' indexes, each valid for one database version."""

    def __init__(self, pool: asyncpg.Pool, threshold: float, themes: tuple[str, ...],
                 capacity: int, shared: SharedLsh | None = None,
                 build_wait_s: float | None = None) -> None:  # fmt: skip
        self.pool = pool
        self.shared = shared
        self.threshold = threshold
        self.themes = themes
        self.capacity = capacity
        #: How long a request waits for a build; None: until it is done.
        self.build_wait_s = build_wait_s
        self._cache: OrderedDict[UUID, UserIndex] = OrderedDict()
        self._building: dict[UUID, tuple[int, asyncio.Task[UserIndex]]] = {}
        self.builds = 0

    async def version(self, conn: asyncpg.Connection, user_id: UUID) -> int:
        value = await conn.fetchval(SELECT_VERSION, user_id)
        return 0 if value is None else int(value)

    async def get(self, user_id: UUID) -> UserIndex:
        async with self.pool.acquire() as conn:
            version = await self.version(conn, user_id)
        cached = self._cache.get(user_id)
        if cached is not None and cached.version >= version:
            self._cache.move_to_end(user_id)
            return cached
        task = self._build_task(user_id, version)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.build_wait_s)
        except TimeoutError:
            raise IndexBuilding(
                "the near-duplicate index is being built; retry shortly",
                retry_after_s=BUILD_RETRY_AFTER_S,
            ) from None

    def _build_task(self, user_id: UUID, version: int) -> asyncio.Task[UserIndex]:
        """The running build of ``user_id`` at ``version`` or later, started if there is none."""
        running = self._building.get(user_id)
        if running is not None and running[0] >= version:
            return running[1]
        task = asyncio.create_task(self._build(user_id), name=f"organize-build-{user_id}")
        self._building[user_id] = (version, task)
        return task

    async def _build(self, user_id: UUID) -> UserIndex:
        try:
            index = await self.rebuild(user_id)
            cached = self._cache.get(user_id)
            if cached is None or cached.version <= index.version:
                self._cache[user_id] = index
                self._cache.move_to_end(user_id)
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            return index
        finally:
            running = self._building.get(user_id)
            if running is not None and running[1] is asyncio.current_task():
                del self._building[user_id]

    async def close(self) -> None:
        """Cancel the builds still running (the service is stopping)."""
        tasks = [task for _, task in self._building.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _snapshot(self, conn: asyncpg.Connection, user_id: UUID) -> tuple[int, list[Any]]:
        """The version and the index rows of one snapshot, fetched in batches."""
        rows: list[asyncpg.Record] = []
        # A cursor is planned for its first rows (a merge or nested-loop join that streams),
        # never a hash of every stored signature built inside the first fetch.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            version = await self.version(conn, user_id)
            cursor = await conn.cursor(SELECT_INDEX_ROWS, user_id)
            while batch := await cursor.fetch(SNAPSHOT_BATCH):
                rows.extend(batch)
        return version, rows

    async def rebuild(self, user_id: UUID) -> UserIndex:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            version, rows = await self._snapshot(conn, user_id)
            fetched = time.perf_counter()
            index = await asyncio.to_thread(
                build_index, rows, version, self.threshold, self.themes, user_id, self.shared
            )
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
    shared = SharedLsh(settings.redis_url, settings.redis_prefix) if settings.redis_url else None
    indexes = OrganizeIndexes(
        app[POOL],
        settings.organize_threshold,
        settings.organize_themes,
        settings.organize_cache_users,
        shared,
        settings.organize_build_wait_ms / 1000,
    )
    app[ORGANIZE] = indexes
    try:
        yield
    finally:
        await indexes.close()
        if shared is not None:
            shared.close()
