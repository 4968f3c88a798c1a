"""Stored objects as Supabase's storage-api keeps them: a row per name, bytes once per content.

``storage_objects`` (``sql/0011``) maps ``(bucket, name)`` to a blob, the blake2b-128 hex digest
of its bytes, and the bytes live in ``{storage_dir}/.blobs/{h[:2]}/{h}``. A million assets cost
two million rows, not two million files in 600,000 folders; the digest is the object's ETag, so a
read hashes nothing. Every reader and writer of objects goes through :class:`ObjectStore`, and
its name check (unknown bucket, traversal, empty segments, NUL, backslash) is the one
:func:`check_name` applies, as the file paths' check did.

Blobs are shared: deleting an object deletes its row, and its blob stays (no blob garbage
collection, which would need an index on ``blob`` over millions of rows for a handful of files).
Opening a store writes any missing blob of the generator's pool
(:func:`reference.urls.blob_pool.pool_blobs`), so a database loaded once serves every name from
a new, empty storage directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import asyncpg

from reference.urls.blob_pool import content_hash, pool_blobs
from reference.urls.buckets import BUCKETS, UnsafePath, safe_object_path

log = logging.getLogger(__name__)

BLOB_DIR: Final = ".blobs"
#: Blob bytes kept in memory: the pool's few kilobytes always fit; large objects are read again.
CACHE_BYTES: Final = 32 * 1024 * 1024
CACHE_MAX_OBJECT: Final = 1024 * 1024
TABLE: Final = "storage_objects"
COLUMNS: Final = ("bucket", "name", "blob", "size")

EXISTING: Final = "select name from storage_objects where bucket = $1 and name = any($2::text[])"
LOOKUP: Final = "select blob, size from storage_objects where bucket = $1 and name = $2"
LOOKUP_MANY: Final = """
select o.bucket, o.name, o.blob, o.size
from storage_objects o join unnest($1::text[], $2::text[]) as k(bucket, name)
  on o.bucket = k.bucket and o.name = k.name
"""
UPSERT: Final = """
insert into storage_objects (bucket, name, blob, size) values ($1, $2, $3, $4)
on conflict (bucket, name) do update
set blob = excluded.blob, size = excluded.size, created_at = now()
"""
REMOVE_MANY: Final = """
delete from storage_objects o using unnest($1::text[], $2::text[]) as k(bucket, name)
where o.bucket = k.bucket and o.name = k.name
"""

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


def check_name(bucket: str, name: str) -> None:
    """Refuse an unknown bucket, and a name that would leave its bucket as a path."""
    if bucket not in BUCKETS:
        raise UnsafePath(f"unknown bucket {bucket!r}")
    safe_object_path(name)


def quick_name_check(bucket: str, name: str) -> None:
    """:func:`check_name`, its full parse run only where a name could be unsafe (a bulk writer
    checks millions of names: the parse costs more than the rest of a row)."""
    if (
        bucket not in BUCKETS
        or not name
        or ".." in name
        or "//" in name
        or name[0] in "/."
        or name[-1] in "/."
        or "/./" in name
        or "\\" in name
        or "\x00" in name
    ):
        check_name(bucket, name)


@dataclass(frozen=True, slots=True)
class StoredObject:
    data: bytes
    #: Quoted, strong: the content's hash.
    etag: str


@dataclass(frozen=True, slots=True)
class Located:
    """Where an object's bytes are, for a reader that streams them (the ZIP download)."""

    blob: Path
    size: int


class ObjectStore:
    """The objects under one storage directory (its ``.blobs``) and the database's rows."""

    def __init__(self, storage_dir: Path, cache_bytes: int = CACHE_BYTES) -> None:
        self.storage_dir = storage_dir
        self.root = storage_dir / BLOB_DIR
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0

    @classmethod
    async def open(cls, storage_dir: Path, cache_bytes: int = CACHE_BYTES) -> ObjectStore:
        store = cls(storage_dir, cache_bytes)
        await asyncio.to_thread(store.ensure_pool)
        return store

    def blob_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def ensure_pool(self) -> int:
        """Write every pool blob that is missing; how many were written."""
        return sum(self._write_blob(digest, data) for digest, data in pool_blobs().items())

    def _write_blob(self, digest: str, data: bytes) -> bool:
        """Write a blob unless it is there. Through a temporary name and a rename, so a reader
        never sees a part, and two writers of one content leave one whole file."""
        path = self.blob_path(digest)
        if path.is_file() and path.stat().st_size == len(data):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{digest}.{uuid.uuid4().hex}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return True

    # --- rows -------------------------------------------------------------------------------

    async def exists_many(self, db: Db, bucket: str, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are objects of ``bucket``: one query, however many names."""
        return {r["name"] for r in await db.fetch(EXISTING, bucket, list(names))}

    async def put(self, db: Db, bucket: str, name: str, data: bytes) -> str:
        """Store ``data`` as ``bucket/name`` (replacing what the name held); its hash. The blob
        is written before the row, so a row always names bytes that are there."""
        check_name(bucket, name)
        digest = content_hash(data)
        await asyncio.to_thread(self._write_blob, digest, data)
        await db.execute(UPSERT, bucket, name, digest, len(data))
        return digest

    async def remove_many(self, db: Db, objects: Iterable[tuple[str, str]]) -> int:
        """Delete these objects' rows (their blobs stay: other names may share them); how many
        existed."""
        pairs = list(objects)
        status = await db.execute(REMOVE_MANY, [b for b, _ in pairs], [n for _, n in pairs])
        return int(status.split()[-1])

    async def locate_many(
        self, db: Db, objects: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Located]:
        """Each existing object's blob file and size, in one query."""
        rows = await db.fetch(LOOKUP_MANY, [b for b, _ in objects], [n for _, n in objects])
        return {
            (r["bucket"], r["name"]): Located(self.blob_path(r["blob"]), r["size"]) for r in rows
        }

    async def read(self, db: Db, bucket: str, name: str) -> StoredObject | None:
        """The object's bytes and ETag; None when there is no such object (or its blob is
        gone: a storage directory replaced under a database whose objects were not all
        generated)."""
        check_name(bucket, name)
        row = await db.fetchrow(LOOKUP, bucket, name)
        if row is None:
            return None
        digest = row["blob"]
        data = self._cache.get(digest)
        if data is not None:
            self._cache.move_to_end(digest)
        else:
            try:
                data = await asyncio.to_thread(self.blob_path(digest).read_bytes)
            except FileNotFoundError:
                log.warning("object %s/%s: its blob %s is missing", bucket, name, digest)
                return None
            self._remember(digest, data)
        return StoredObject(data, f'"{digest}"')

    def _remember(self, digest: str, data: bytes) -> None:
        if len(data) > CACHE_MAX_OBJECT or len(data) > self.cache_bytes:
            return
        self._cache[digest] = data
        self._cached += len(data)
        while self._cached > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)
