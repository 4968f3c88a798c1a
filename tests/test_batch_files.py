"""Objects: purge removes them after the rows, and retries what it could not remove; the ZIP
download streams them."""

from __future__ import annotations

import asyncio
import io
import os
import time
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from reference.batch.operations import PurgePolicy, purge_rows, remove_due_files
from reference.urls.object_store import ObjectStore
from tests._batch_support import (
    add_assets,
    asset_files,
    background_held,
    connect,
    locate,
    new_user,
    stored,
)
from tests.conftest import auth_headers

PENDING = "select path, attempts, last_error from purge_files where asset_id = $1"


@pytest.fixture
async def own_purge_passes(seeded_dsn: str) -> AsyncIterator[None]:
    """The purge passes of the test are its own: the app's trash worker makes none (its first
    pass, after the lease is free, landed inside the test on a loaded machine)."""
    async with background_held(seeded_dsn):
        yield


async def test_a_name_the_store_refuses_waits_for_a_retry_and_the_rest_is_purged(
    seeded_dsn, make_client, tmp_path: Path, own_purge_passes: None
):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        # A row naming an object no store accepts (a backslash): its removal fails each pass.
        (stuck,) = await add_assets(conn, user, ["image"], paths=[f"{user}\\stuck"])
        (clean,) = await add_assets(conn, user, ["video"])
        files = await asset_files(conn, tmp_path, [clean])
        client = await make_client(seeded_dsn, storage_dir=tmp_path, purge_retry_base_s=0)
        selection = {"asset_ids": [str(stuck), str(clean)]}
        headers = auth_headers(user)
        assert (await client.post("/v1/batch/delete", json=selection, headers=headers)).ok

        response = await client.post("/v1/batch/purge", json=selection, headers=headers)
        op = (await response.json())["operation"]
        assert (op["status"], op["done"], op["files_pending"]) == ("done", 2, 2)
        assert await locate(conn, [stuck, clean]) == {}  # no row points at any of the objects
        assert await stored(conn, files[clean]) == []
        pending = await conn.fetch(PENDING, stuck)
        assert [p["attempts"] for p in pending] == [1, 1]
        assert all(p["last_error"].startswith("UnsafePath") for p in pending)

        removed, failed = await remove_due_files(conn, PurgePolicy(ObjectStore(tmp_path), 0, 0))
        assert (removed, failed) == (0, 2)
        assert [p["attempts"] for p in await conn.fetch(PENDING, stuck)] == [2, 2]
    finally:
        await conn.close()


async def test_removals_wait_while_the_database_is_away_and_the_next_pass_makes_them(
    seeded_dsn, make_client, tmp_path: Path, own_purge_passes: None
):
    """The rows are purged and their objects queued; the connection is cut before the objects
    go: they stay, queued, and the next pass removes them."""
    user = new_user()
    conn = await connect(seeded_dsn)
    doomed = await connect(seeded_dsn)
    policy = PurgePolicy(ObjectStore(tmp_path), 0, 0)
    try:
        ids = await add_assets(conn, user, ["image", "video"])
        files = await asset_files(conn, tmp_path, ids)
        objects = [o for i in ids for o in files[i]]
        client = await make_client(seeded_dsn, storage_dir=tmp_path)
        selection = {"asset_ids": [str(i) for i in ids]}
        assert (
            await client.post("/v1/batch/delete", json=selection, headers=auth_headers(user))
        ).ok
        async with doomed.transaction():
            assert await purge_rows(doomed, user, ids) == 2
        await conn.execute("select pg_terminate_backend($1)", doomed.get_server_pid())
        deadline = time.monotonic() + 10
        while not doomed.is_closed():  # the server's goodbye has reached the client
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        with pytest.raises(asyncpg.InterfaceError):
            await remove_due_files(doomed, policy)
        assert await stored(conn, objects) == objects
        assert await conn.fetchval("select count(*) from purge_files where user_id = $1", user) == 4

        assert await remove_due_files(conn, policy) == (4, 0)
        assert await stored(conn, objects) == []
        assert await conn.fetchval("select count(*) from purge_files where user_id = $1", user) == 0
    finally:
        await conn.close()
        await doomed.close()


async def test_an_object_another_row_still_names_is_kept(seeded_dsn, make_client, tmp_path: Path):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        shared = f"{user}/shared"
        purged, kept = await add_assets(conn, user, ["image", "image"], paths=[shared, shared])
        files = await asset_files(conn, tmp_path, [purged, kept])
        client = await make_client(seeded_dsn, storage_dir=tmp_path)
        headers = auth_headers(user)
        selection = {"asset_ids": [str(purged)]}
        assert (await client.post("/v1/batch/delete", json=selection, headers=headers)).ok
        assert (await client.post("/v1/batch/purge", json=selection, headers=headers)).ok
        assert set(await locate(conn, [purged, kept])) == {kept}
        assert await stored(conn, files[kept]) == list(files[kept])
    finally:
        await conn.close()


async def test_download_zip_opens_and_every_crc_matches(seeded_dsn, make_client, tmp_path: Path):
    user, other = new_user(), new_user()
    conn = await connect(seeded_dsn)
    store = ObjectStore(tmp_path)
    try:
        ids = await add_assets(conn, user, ["image", "video", "image", "video", "image"])
        theirs = await add_assets(conn, other, ["image"])
        files = await asset_files(conn, tmp_path, [*ids, *theirs])
        sizes = [0, 1, 65_536, 3 * 1024 * 1024 + 7]
        contents = {}
        for asset_id, size in zip(ids, sizes, strict=False):
            main = files[asset_id][0]
            contents[asset_id] = os.urandom(size)
            await store.put(conn, main.bucket, main.name, contents[asset_id])
        await store.remove_many(conn, [files[ids[4]][0].key])  # left out and counted
        client = await make_client(seeded_dsn, storage_dir=tmp_path)
        selection = {"asset_ids": [str(i) for i in [*ids, *theirs]]}
        response = await client.post(
            "/v1/batch/download", json=selection, headers=auth_headers(user)
        )
        body = await response.read()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(body)
        assert response.headers["X-Assets-Not-Found"] == "1"
        assert response.headers["X-Assets-Missing-Files"] == "1"

        archive = zipfile.ZipFile(io.BytesIO(body))
        assert archive.testzip() is None
        infos = {info.filename: info for info in archive.infolist()}
        assert len(infos) == 4
        for asset_id, kind in zip(ids[:4], ["image", "video", "image", "video"], strict=True):
            data = contents[asset_id]
            info = infos[f"{kind}s/{asset_id}{files[asset_id][0].suffix}"]
            assert info.compress_type == zipfile.ZIP_STORED
            assert zlib.crc32(data) == info.CRC
            assert archive.read(info) == data
    finally:
        await conn.close()


async def test_download_over_the_size_cap_is_413(seeded_dsn, make_client, tmp_path: Path):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        ids = await add_assets(conn, user, ["image", "video"])
        await asset_files(conn, tmp_path, ids, size=4096)
    finally:
        await conn.close()
    client = await make_client(seeded_dsn, storage_dir=tmp_path, download_max_bytes=8000)
    response = await client.post(
        "/v1/batch/download", json={"asset_ids": [str(i) for i in ids]}, headers=auth_headers(user)
    )
    body = await response.json()
    assert response.status == 413
    assert body["field"] == "asset_ids"
    assert body["archive_bytes"] > 8000
