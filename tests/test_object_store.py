"""The object store: rows in PostgreSQL, each content once on disk; what the fixture writer
leaves behind is served, from any storage directory."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from fixtures.storage_files import (
    HAS_KEY,
    write_storage_objects,
    write_storage_objects_in_child,
)
from reference.db.pool import connect
from reference.urls.blob_pool import pool_blobs
from reference.urls.buckets import UnsafePath, determine_bucket
from reference.urls.object_store import BLOB_DIR, ObjectStore
from tests.conftest import SETTINGS

SERVICE = {"Authorization": f"Bearer {SETTINGS.service_role_key}"}
ASSET_OBJECTS = """
select 'image' as type, quality, model_type, metadata, storage_path, thumbnail_path from images
union all
select 'video', quality, model_type, metadata, storage_path, thumbnail_path from videos
"""
ROWS = "select bucket, name, blob, size from storage_objects order by bucket, name"
#: What a suffix's bytes start with, and the type the routes serve it as.
MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    ".webp": (b"RIFF", "image/webp"),
    ".mp4": (b"\x00\x00\x00", "video/mp4"),
}


def etag_of(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'


async def asset_objects(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    objects = []
    for r in await conn.fetch(ASSET_OBJECTS):
        bucket = determine_bucket(r["type"], r["quality"], r["model_type"], r["metadata"])
        objects += [(bucket, r["storage_path"]), (bucket, r["thumbnail_path"])]
    return objects


def blob_files(storage_dir: Path) -> list[Path]:
    return [p for p in (storage_dir / BLOB_DIR).rglob("*") if p.is_file()]


async def test_put_read_remove(seeded_dsn, tmp_path):
    store = await ObjectStore.open(tmp_path)
    data = os.urandom(5000)
    async with connect(seeded_dsn, json_codecs=True) as conn:
        digest = await store.put(conn, "image_fast", "u/a.png", data)
        assert await store.exists_many(conn, "image_fast", ["u/a.png", "u/b.png"]) == {"u/a.png"}
        found = await store.read(conn, "image_fast", "u/a.png")
        assert found is not None
        assert (found.data, found.etag) == (data, etag_of(data))
        assert store.blob_path(digest).read_bytes() == data
        assert await store.read(conn, "image_high", "u/a.png") is None
        with pytest.raises(UnsafePath):
            await store.put(conn, "image_fast", "../a.png", data)
        assert await store.remove_many(conn, [("image_fast", "u/a.png"), ("image_fast", "x")]) == 1
        assert await store.read(conn, "image_fast", "u/a.png") is None


async def test_two_concurrent_puts_of_one_name_leave_one_row(seeded_dsn, tmp_path):
    store = await ObjectStore.open(tmp_path)
    first, second = os.urandom(70_000), os.urandom(70_000)
    async with connect(seeded_dsn) as one, connect(seeded_dsn) as two:
        for _ in range(5):
            await asyncio.gather(
                store.put(one, "video_high", "u/race.mp4", first),
                store.put(two, "video_high", "u/race.mp4", second),
            )
            rows = await one.fetch("select blob from storage_objects where name = 'u/race.mp4'")
            assert len(rows) == 1
            found = await ObjectStore(tmp_path).read(one, "video_high", "u/race.mp4")
            assert found is not None
            assert found.data in (first, second)
            assert found.etag == etag_of(found.data) == f'"{rows[0]["blob"]}"'
    assert not [p for p in blob_files(tmp_path) if p.suffix == ".tmp"]


async def test_a_deleted_object_is_gone_while_a_name_sharing_its_blob_serves(
    make_client, seeded_dsn, tmp_path
):
    client = await make_client(seeded_dsn, storage_dir=tmp_path)
    store = await ObjectStore.open(tmp_path)
    data = os.urandom(300)
    async with connect(seeded_dsn, json_codecs=True) as conn:
        for name in ("u/kept.png", "u/deleted.png"):
            await store.put(conn, "image_fast", name, data)
        assert await store.remove_many(conn, [("image_fast", "u/deleted.png")]) == 1
    deleted = await client.get("/storage/v1/object/image_fast/u/deleted.png", headers=SERVICE)
    assert deleted.status == 400
    assert (await deleted.json())["statusCode"] == "404"
    kept = await client.get("/storage/v1/object/image_fast/u/kept.png", headers=SERVICE)
    assert kept.status == 200
    assert await kept.read() == data
    assert kept.headers["ETag"] == etag_of(data)


async def test_every_asset_is_served_after_the_fixture_writer(make_client, seeded_dsn, tmp_path):
    """Every storage_path and thumbnail_path: real bytes of its suffix's kind, the content's
    ETag; one of each bucket and suffix over HTTP, with its content type."""
    async with connect(seeded_dsn, json_codecs=True) as conn:
        await conn.execute("delete from storage_objects")
        report = await write_storage_objects(conn, tmp_path / "written", progress=False)
        objects = await asset_objects(conn)
        assert report.written == len(objects) == len(set(objects)) > 0
        store = ObjectStore(tmp_path / "written")
        for bucket, name in objects:
            found = await store.read(conn, bucket, name)
            assert found is not None, (bucket, name)
            magic, _ = MAGIC[Path(name).suffix]
            assert found.data.startswith(magic)
            assert found.etag == etag_of(found.data)
    # A few dozen blob files for thousands of objects: one per pool content.
    assert len(blob_files(tmp_path / "written")) == len(pool_blobs())
    client = await make_client(seeded_dsn, storage_dir=tmp_path / "written")
    seen = set()
    for bucket, name in objects:
        suffix = Path(name).suffix
        if (bucket, suffix) in seen:
            continue
        seen.add((bucket, suffix))
        response = await client.get(f"/storage/v1/object/{bucket}/{name}", headers=SERVICE)
        assert response.status == 200, (bucket, name)
        assert response.headers["Content-Type"] == MAGIC[suffix][1]
        assert (await response.read()).startswith(MAGIC[suffix][0])
    assert len(seen) >= 4


async def test_a_reused_database_serves_from_an_empty_storage_dir(
    make_client, seeded_dsn, tmp_path
):
    """A template database loaded once, a service on a new storage directory: the pool's
    blobs are written when the store opens, so every generated object serves."""
    async with connect(seeded_dsn, json_codecs=True) as conn:
        await conn.execute("delete from storage_objects")
        await write_storage_objects(conn, tmp_path / "first", progress=False)
        objects = (await asset_objects(conn))[:20]
        first = [await ObjectStore(tmp_path / "first").read(conn, b, n) for b, n in objects]
    empty = tmp_path / "second"
    client = await make_client(seeded_dsn, storage_dir=empty)
    for (bucket, name), was in zip(objects, first, strict=True):
        response = await client.get(f"/storage/v1/object/{bucket}/{name}", headers=SERVICE)
        assert response.status == 200
        assert was is not None
        assert await response.read() == was.data
    assert len(blob_files(empty)) == len(pool_blobs())


async def test_the_writer_writes_nothing_twice_and_two_writers_write_what_one_does(
    seeded_dsn, tmp_path
):
    async with connect(seeded_dsn, json_codecs=True) as conn:
        await conn.execute("delete from storage_objects")
    one = await write_storage_objects_in_child(seeded_dsn, tmp_path, False, writers=1)
    async with connect(seeded_dsn, json_codecs=True) as conn:
        rows = await conn.fetch(ROWS)
        assert one.written == len(rows) > 0
        again = await write_storage_objects(conn, tmp_path, progress=False)
        assert (again.written, again.present) == (0, len(rows))
        # Some missing: only those are written, beside the ones present.
        await conn.execute("delete from storage_objects where name like '%.webp'")
        missing = len(rows) - await conn.fetchval("select count(*) from storage_objects")
        healed = await write_storage_objects_in_child(seeded_dsn, tmp_path, False, writers=2)
        assert (healed.written, healed.present) == (missing, len(rows) - missing)
        assert await conn.fetch(ROWS) == rows
        await conn.execute("delete from storage_objects")
    # A dataset just generated: COPY into the keyless table, the key built after.
    two = await write_storage_objects_in_child(
        seeded_dsn, tmp_path, False, writers=2, generated=True
    )
    async with connect(seeded_dsn, json_codecs=True) as conn:
        assert await conn.fetch(ROWS) == rows
        assert await conn.fetchval(HAS_KEY)
    assert two.written == one.written
    assert Counter(Path(r["name"]).suffix for r in rows).keys() <= MAGIC.keys()
