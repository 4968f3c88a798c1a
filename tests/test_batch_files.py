"""Files: purge removes them after the rows and retries a failed removal; the ZIP download."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
import zlib
from pathlib import Path

from reference.batch.operations import PurgePolicy, remove_due_files
from tests._batch_support import add_assets, asset_files, connect, locate, new_user
from tests.conftest import auth_headers

PENDING = "select path, attempts, last_error from purge_files where asset_id = $1"


async def test_failed_file_removal_is_retried_and_the_asset_ends_fully_purged(
    seeded_dsn, make_client, tmp_path: Path
):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        stuck, clean = await add_assets(conn, user, ["image", "video"])
        files = await asset_files(conn, tmp_path, [stuck, clean])
        main, thumb = files[stuck]
        main.unlink()
        main.mkdir()  # a real filesystem refusal: unlink() on a non-empty directory fails
        (main / "held").write_bytes(b"x")
        client = await make_client(seeded_dsn, storage_dir=tmp_path, purge_retry_base_s=0)
        selection = {"asset_ids": [str(stuck), str(clean)]}
        headers = auth_headers(user)
        assert (await client.post("/v1/batch/delete", json=selection, headers=headers)).ok

        response = await client.post("/v1/batch/purge", json=selection, headers=headers)
        op = (await response.json())["operation"]
        assert (op["status"], op["done"], op["files_pending"]) == ("done", 2, 1)
        assert await locate(conn, [stuck, clean]) == {}  # no row points at any of the files
        assert not thumb.exists()
        assert not any(p.exists() for p in files[clean])
        (pending,) = await conn.fetch(PENDING, stuck)
        assert pending["attempts"] == 1
        assert pending["last_error"].startswith(("IsADirectoryError", "PermissionError", "OSError"))

        shutil.rmtree(main)
        main.write_bytes(b"the file is back to normal")
        removed, failed = await remove_due_files(conn, PurgePolicy(tmp_path, 0, 0))
        assert (removed, failed) == (1, 0)
        assert not main.exists()
        assert await conn.fetch(PENDING, stuck) == []
        again = await client.get(f"/v1/batch/operations/{op['id']}", headers=headers)
        assert (await again.json())["operation"]["files_pending"] == 0
    finally:
        await conn.close()


async def test_a_file_another_row_still_names_is_kept(seeded_dsn, make_client, tmp_path: Path):
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
        assert all(p.exists() for p in files[kept])
    finally:
        await conn.close()


async def test_download_zip_opens_and_every_crc_matches(seeded_dsn, make_client, tmp_path: Path):
    user, other = new_user(), new_user()
    conn = await connect(seeded_dsn)
    try:
        ids = await add_assets(conn, user, ["image", "video", "image", "video", "image"])
        theirs = await add_assets(conn, other, ["image"])
        files = await asset_files(conn, tmp_path, [*ids, *theirs])
        sizes = [0, 1, 65_536, 3 * 1024 * 1024 + 7]
        for asset_id, size in zip(ids, sizes, strict=False):
            files[asset_id][0].write_bytes(os.urandom(size))
        files[ids[4]][0].unlink()  # a missing file is left out and counted
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
            data = files[asset_id][0].read_bytes()
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
