"""Rows and objects for the batch tests: each test adds its own users' assets to the seeded
copy, and puts their objects through the object store."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

import asyncpg

from reference.batch.runner import BACKGROUND_LEASE
from reference.db.lease import LOCK
from reference.db.pool import init_connection
from reference.urls.buckets import determine_bucket
from reference.urls.object_store import ObjectStore

INSERT_IMAGE = """
insert into images (id, user_id, prompt, status, quality, model_type, storage_path,
                    thumbnail_path, metadata)
values ($1, $2, $3, 'completed', $4, null, $5, $6, $7)
"""
INSERT_VIDEO = """
insert into videos (id, user_id, prompt, status, quality, model_type, storage_path,
                    thumbnail_path, duration_s, metadata)
values ($1, $2, $3, 'completed', $4, null, $5, $6, 5.0, $7)
"""
LOCATE = """
select id, 'live' as place, metadata from images where id = any($1::uuid[])
union all select id, 'live', metadata from videos where id = any($1::uuid[])
union all select id, 'trash', metadata from trashed_images where id = any($1::uuid[])
union all select id, 'trash', metadata from trashed_videos where id = any($1::uuid[])
"""
UNSET = object()


def new_user() -> UUID:
    return uuid.uuid4()


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


def ordered_ids(n: int) -> list[UUID]:
    """Ids in ascending order (chunks take items by asset id), so a test knows each chunk."""
    base = uuid.uuid4().int & ~((1 << 32) - 1)
    return [UUID(int=base + i + 1) for i in range(n)]


async def add_assets(
    conn: asyncpg.Connection,
    user_id: UUID,
    types: Sequence[str],
    metadata: Sequence[dict[str, Any] | None] | None = None,
    ids: Sequence[UUID] | None = None,
    paths: Sequence[str] | None = None,
) -> list[UUID]:
    """One asset per entry of ``types`` ('image' or 'video'); returns their ids."""
    ids = list(ids) if ids is not None else [uuid.uuid4() for _ in types]
    metas = list(metadata) if metadata is not None else [{} for _ in types]
    for index, (kind, asset_id, meta) in enumerate(zip(types, ids, metas, strict=True)):
        stem = paths[index] if paths is not None else f"{user_id}/{asset_id}"
        ext = ".png" if kind == "image" else ".mp4"
        await conn.execute(
            INSERT_IMAGE if kind == "image" else INSERT_VIDEO,
            asset_id,
            user_id,
            f"prompt {index}",
            "fast",
            f"{stem}{ext}",
            f"{stem}_thumb.webp",
            meta,
        )
    return ids


async def locate(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, tuple[str, Any]]:
    """Where each asset is ('live', 'trash'; absent when gone) and its metadata."""
    rows = await conn.fetch(LOCATE, list(ids))
    return {r["id"]: (r["place"], r["metadata"]) for r in rows}


@dataclass(frozen=True)
class Stored:
    """An object a test put, and its bytes."""

    bucket: str
    name: str
    data: bytes

    @property
    def key(self) -> tuple[str, str]:
        return self.bucket, self.name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix


async def stored(conn: asyncpg.Connection, objects: Iterable[Stored]) -> list[Stored]:
    """Which of ``objects`` the store still holds."""
    wanted = list(objects)
    rows = await conn.fetch(
        "select bucket, name from storage_objects o"
        " join unnest($1::text[], $2::text[]) as k(b, n) on o.bucket = k.b and o.name = k.n",
        [o.bucket for o in wanted],
        [o.name for o in wanted],
    )
    there = {(r["bucket"], r["name"]) for r in rows}
    return [o for o in wanted if o.key in there]


async def asset_files(
    conn: asyncpg.Connection, storage_dir: Path, ids: Sequence[UUID], size: int = 64
) -> dict[UUID, tuple[Stored, Stored]]:
    """Put each live asset's object and thumbnail, with random bytes, through the store."""
    rows = await conn.fetch(
        """
        select 'image' as type, id, quality, model_type, metadata, storage_path, thumbnail_path
        from images where id = any($1::uuid[])
        union all
        select 'video', id, quality, model_type, metadata, storage_path, thumbnail_path
        from videos where id = any($1::uuid[])
        """,
        list(ids),
    )
    store = ObjectStore(storage_dir)
    files: dict[UUID, tuple[Stored, Stored]] = {}
    for r in rows:
        bucket = determine_bucket(r["type"], r["quality"], r["model_type"], r["metadata"])
        main = Stored(bucket, r["storage_path"], os.urandom(size))
        thumb = Stored(bucket, r["thumbnail_path"], os.urandom(size))
        for put in (main, thumb):
            await store.put(conn, put.bucket, put.name, put.data)
        files[r["id"]] = (main, thumb)
    return files


async def wait_for(conn: asyncpg.Connection, sql: str, *args: Any, limit_s: float = 30.0) -> Any:
    """Poll until ``sql`` returns a non-null value (a condition, not a guess at a delay)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = await conn.fetchval(sql, *args)
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(sql)
        await asyncio.sleep(0.02)


@asynccontextmanager
async def background_held(dsn: str, timeout_s: float = 30.0) -> AsyncIterator[None]:
    """Hold the service's background lease, so no app started meanwhile runs its sweeper or
    trash worker: a test that purges files itself is not raced by a pass starting at a moment
    that depends on the machine's load (an app waits ``RETRY_S`` when an earlier test's app
    still holds the lease)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.fetchval(LOCK, BACKGROUND_LEASE, timeout=timeout_s)
        yield
    finally:
        await conn.close()  # the session's end releases the lock
