"""Batch operations over real HTTP on a real database: selection, dismiss, trash, undo/redo."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from reference.batch.operations import PurgePolicy, purge_expired
from reference.db.pool import create_pool
from reference.urls.object_store import ObjectStore
from tests._batch_support import add_assets, asset_files, connect, locate, new_user, stored
from tests.conftest import auth_headers

METADATA_VARIANTS: list[dict[str, Any] | None] = [
    None,
    {},
    {"job_id": "j-1", "is_sdxl": True},
    {"workspace_dismissed": "false", "enhanced": True, "note": {"nested": [1, 2]}},
    {"workspace_dismissed": False},
    {"workspace_dismissed": True, "job_id": "j-2"},
]


async def post(client, path: str, user, body: Any = None, status: int = 200, **headers):
    response = await client.post(path, json=body, headers={**auth_headers(user), **headers})
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def test_dismiss_keeps_other_keys_and_undo_restores_exactly(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        types = ["image", "video"] * len(METADATA_VARIANTS)
        metas = [m for m in METADATA_VARIANTS for _ in range(2)]
        ids = await add_assets(conn, user, types, metas)
        original = dict(zip(ids, metas, strict=True))
        client = await make_client(seeded_dsn)

        body = await post(client, "/v1/batch/dismiss", user, {"asset_ids": [str(i) for i in ids]})
        op = body["operation"]
        assert (op["status"], op["state"], op["done"], op["total"]) == ("done", "applied", 12, 12)
        after = await locate(conn, ids)
        for asset_id, meta in original.items():
            assert after[asset_id] == ("live", {**(meta or {}), "workspace_dismissed": True})

        await post(client, "/v1/batch/undo", user)
        after_undo = await locate(conn, ids)
        assert {i: m for i, (_, m) in after_undo.items()} == original

        await post(client, "/v1/batch/redo", user)
        after_redo = await locate(conn, ids)
        assert after_redo == after

        undismissed = await post(
            client, "/v1/batch/undismiss", user, {"asset_ids": [str(ids[0]), str(ids[1])]}
        )
        assert undismissed["operation"]["done"] == 2
        assert (await locate(conn, ids[:1]))[ids[0]][1] == {"workspace_dismissed": False}
        await post(client, "/v1/batch/undo", user)
        assert (await locate(conn, ids[:1]))[ids[0]][1] == {"workspace_dismissed": True}
    finally:
        await conn.close()


async def test_job_selection_reaches_both_tables_and_only_the_callers(seeded_dsn, make_client):
    user, other = new_user(), new_user()
    job = str(uuid.uuid4())
    conn = await connect(seeded_dsn)
    try:
        mine = await add_assets(
            conn, user, ["image", "image", "video", "video"], [{"job_id": job}] * 4
        )
        unrelated = await add_assets(conn, user, ["image"], [{"job_id": str(uuid.uuid4())}])
        theirs = await add_assets(conn, other, ["image", "video"], [{"job_id": job}] * 2)
        missing_job = str(uuid.uuid4())
        client = await make_client(seeded_dsn)

        body = await post(client, "/v1/batch/dismiss", user, {"job_ids": [job, missing_job]})
        op = body["operation"]
        assert op["total"] == 4
        assert op["not_found_jobs"] == [missing_job]
        state = await locate(conn, mine + unrelated + theirs)
        for asset_id in mine:
            assert state[asset_id][1] == {"job_id": job, "workspace_dismissed": True}
        for asset_id in unrelated + theirs:
            assert "workspace_dismissed" not in state[asset_id][1]
    finally:
        await conn.close()


async def test_other_users_ids_are_reported_and_never_touched(seeded_dsn, make_client):
    user, other = new_user(), new_user()
    conn = await connect(seeded_dsn)
    try:
        mine = await add_assets(conn, user, ["image", "video"])
        theirs = await add_assets(conn, other, ["image", "video"], [{"k": 1}, None])
        absent = uuid.uuid4()
        client = await make_client(seeded_dsn)
        selection = {"asset_ids": [str(i) for i in [*mine, *theirs, absent]]}

        for route in ("dismiss", "delete"):
            body = await post(client, f"/v1/batch/{route}", user, selection)
            assert body["operation"]["total"] == 2
            assert sorted(body["operation"]["not_found"]) == sorted(
                str(i) for i in [*theirs, absent]
            )
        restore = await post(client, "/v1/batch/restore", user, {"asset_ids": [str(theirs[0])]})
        assert restore["operation"]["not_found"] == [str(theirs[0])]
        state = await locate(conn, mine + theirs)
        assert state[theirs[0]] == ("live", {"k": 1})
        assert state[theirs[1]] == ("live", None)
        assert {state[i][0] for i in mine} == {"trash"}

        response = await client.get(
            f"/v1/batch/operations/{body['operation']['id']}", headers=auth_headers(other)
        )
        assert response.status == 404
    finally:
        await conn.close()


async def test_delete_moves_to_trash_and_restore_brings_back_job_links(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        image, video = await add_assets(conn, user, ["image", "video"], [{"a": 1}, None])
        job_id = uuid.uuid4()
        await conn.execute(
            "insert into jobs (id, user_id, job_type, quality, status, image_id, video_id) "
            "values ($1, $2, 'image', 'fast', 'completed', $3, $4)",
            job_id, user, image, video,
        )  # fmt: skip
        client = await make_client(seeded_dsn)
        await post(client, "/v1/batch/delete", user, {"asset_ids": [str(image), str(video)]})

        in_view = await conn.fetchval(
            "select count(*) from assets where id = any($1::uuid[])", [image, video]
        )
        assert in_view == 0
        links = await conn.fetchrow("select image_id, video_id from jobs where id = $1", job_id)
        assert tuple(links) == (None, None)
        page = await (await client.get("/v1/trash?limit=1", headers=auth_headers(user))).json()
        assert len(page["assets"]) == 1
        assert page["next_cursor"]
        second = await (
            await client.get(f"/v1/trash?cursor={page['next_cursor']}", headers=auth_headers(user))
        ).json()
        assert {a["id"] for a in page["assets"] + second["assets"]} == {str(image), str(video)}
        assert second["next_cursor"] is None

        await post(client, "/v1/batch/restore", user, {"asset_ids": [str(image), str(video)]})
        links = await conn.fetchrow("select image_id, video_id from jobs where id = $1", job_id)
        assert tuple(links) == (image, video)
        assert await locate(conn, [image, video]) == {
            image: ("live", {"a": 1}),
            video: ("live", None),
        }
        bad = await client.get("/v1/trash?cursor=nonsense", headers=auth_headers(user))
        assert bad.status == 400
        assert (await bad.json())["field"] == "cursor"
    finally:
        await conn.close()


async def test_undo_redo_sequence_ends_in_the_expected_state(seeded_dsn, make_client, tmp_path):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        dismissed = await add_assets(conn, user, ["image", "video"], [None, {"x": 1}])
        deleted = await add_assets(conn, user, ["image", "video", "image"])
        files = await asset_files(conn, tmp_path, deleted)
        client = await make_client(seeded_dsn, storage_dir=tmp_path)
        ids = lambda xs: {"asset_ids": [str(i) for i in xs]}  # noqa: E731

        await post(client, "/v1/batch/dismiss", user, ids(dismissed))
        await post(client, "/v1/batch/delete", user, ids(deleted))
        await post(client, "/v1/batch/restore", user, ids(deleted[:1]))
        assert [p for p, _ in (await locate(conn, deleted)).values()].count("trash") == 2

        await post(client, "/v1/batch/undo", user)  # the restore
        assert {p for p, _ in (await locate(conn, deleted)).values()} == {"trash"}
        await post(client, "/v1/batch/undo", user)  # the delete
        assert {p for p, _ in (await locate(conn, deleted)).values()} == {"live"}
        await post(client, "/v1/batch/undo", user)  # the dismiss
        state = await locate(conn, dismissed)
        assert (state[dismissed[0]][1], state[dismissed[1]][1]) == (None, {"x": 1})
        nothing = await post(client, "/v1/batch/undo", user, status=409)
        assert nothing["message"] == "nothing to undo"

        for _ in range(3):
            await post(client, "/v1/batch/redo", user)
        await post(client, "/v1/batch/redo", user, status=409)
        state = await locate(conn, dismissed + deleted)
        assert all(state[i][1]["workspace_dismissed"] is True for i in dismissed)
        assert [state[i][0] for i in deleted] == ["live", "trash", "trash"]

        purge = await post(client, "/v1/batch/purge", user, ids(deleted))
        assert purge["operation"]["total"] == 2
        assert purge["operation"]["not_found"] == [str(deleted[0])]
        assert purge["operation"]["files_pending"] == 0
        assert set(await locate(conn, deleted)) == {deleted[0]}
        assert await stored(conn, files[deleted[0]]) == list(files[deleted[0]])
        assert await stored(conn, [p for i in deleted[1:] for p in files[i]]) == []
        refused = await post(client, "/v1/batch/undo", user, status=409)
        assert "purge" in refused["message"]

        await post(client, "/v1/batch/delete", user, ids(dismissed))
        await post(client, "/v1/batch/undo", user)  # the delete, above the purge
        assert {p for p, _ in (await locate(conn, dismissed)).values()} == {"live"}
        await post(client, "/v1/batch/undo", user, status=409)  # the purge again
        await post(client, "/v1/batch/redo", user)
        assert {p for p, _ in (await locate(conn, dismissed)).values()} == {"trash"}
    finally:
        await conn.close()


async def test_a_new_operation_clears_the_redo_stack(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        a, b = await add_assets(conn, user, ["image", "image"])
        client = await make_client(seeded_dsn)
        await post(client, "/v1/batch/dismiss", user, {"asset_ids": [str(a)]})
        await post(client, "/v1/batch/undo", user)
        await post(client, "/v1/batch/dismiss", user, {"asset_ids": [str(b)]})
        await post(client, "/v1/batch/redo", user, status=409)
        undone = await post(client, "/v1/batch/undo", user)
        assert undone["operation"]["state"] == "undone"
        state = await locate(conn, [a, b])
        assert (state[a][1], state[b][1]) == ({}, {})
    finally:
        await conn.close()


async def test_oversized_and_malformed_requests_name_the_field(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    job = str(uuid.uuid4())
    try:
        await add_assets(conn, user, ["image"] * 6, [{"job_id": job}] * 6)
    finally:
        await conn.close()
    client = await make_client(seeded_dsn, batch_max_ids=5)
    many = [str(uuid.uuid4()) for _ in range(6)]
    cases = [
        ({"asset_ids": many}, 413, "asset_ids"),
        ({"job_ids": many}, 413, "job_ids"),
        ({"asset_ids": many[:3], "job_ids": many[3:]}, 413, "job_ids"),
        ({"job_ids": [job]}, 413, "job_ids"),
        ({"asset_ids": [many[0], "nope"]}, 400, "asset_ids[1]"),
        ({"asset_ids": [7]}, 400, "asset_ids[0]"),
        ({"asset_ids": "x"}, 400, "asset_ids"),
        ({}, 400, "asset_ids"),
        ({"ids": []}, 400, "ids"),
        ([1], 400, "body"),
    ]
    for route in ("dismiss", "delete", "download"):
        for body, status, field in cases:
            answer = await post(client, f"/v1/batch/{route}", user, body, status=status)
            assert answer["field"] == field, (route, body, answer)
    long_key = await post(
        client, "/v1/batch/dismiss", user, {"asset_ids": many[:1]}, status=400,
        **{"Idempotency-Key": "k" * 201},
    )  # fmt: skip
    assert long_key["field"] == "Idempotency-Key"


async def test_idempotency_key_returns_the_original_operation(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        ids = await add_assets(conn, user, ["image", "video"])
        client = await make_client(seeded_dsn)
        body = {"asset_ids": [str(i) for i in ids]}
        key = {"Idempotency-Key": "retry-1"}
        first = await post(client, "/v1/batch/dismiss", user, body, **key)
        await post(client, "/v1/batch/undo", user)
        again = await post(client, "/v1/batch/dismiss", user, body, **key)
        assert again["operation"]["id"] == first["operation"]["id"]
        state = await locate(conn, ids)
        assert all(m == {} for _, m in state.values())  # the retry did not dismiss again
        count = await conn.fetchval(
            "select count(*) from batch_operations where user_id = $1", user
        )
        assert count == 1
        clash = await post(
            client, "/v1/batch/dismiss", user, {"asset_ids": body["asset_ids"][:1]}, 409, **key
        )
        assert clash["field"] == "Idempotency-Key"
        other_user = await post(client, "/v1/batch/dismiss", new_user(), body, **key)
        assert other_user["operation"]["id"] != first["operation"]["id"]
        assert other_user["operation"]["not_found"] == body["asset_ids"]
    finally:
        await conn.close()


async def test_large_operation_runs_in_chunks_with_progress(seeded_dsn, make_client):
    user = new_user()
    conn = await connect(seeded_dsn)
    try:
        ids = await add_assets(conn, user, ["image", "video"] * 20)
        client = await make_client(seeded_dsn, batch_inline_max=10, batch_chunk_size=7)
        response = await client.post(
            "/v1/batch/dismiss", json={"asset_ids": [str(i) for i in ids]},
            headers=auth_headers(user),
        )  # fmt: skip
        assert response.status == 202
        location = response.headers["Location"]
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while True:
            poll = await client.get(location, headers=auth_headers(user))
            op = (await poll.json())["operation"]
            seen.append(op["done"])
            if op["status"] == "done":
                break
            assert poll.status == 202
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert op["done"] == op["total"] == 40
        assert seen == sorted(seen)
        state = await locate(conn, ids)
        assert all(m == {"workspace_dismissed": True} for _, m in state.values())
        resumed = await client.post(f"{location}/resume", headers=auth_headers(user))
        assert resumed.status == 200
    finally:
        await conn.close()


async def test_trash_past_retention_is_purged_by_the_worker_pass(seeded_dsn, tmp_path: Path):
    user = new_user()
    conn = await connect(seeded_dsn)
    pool = await create_pool(seeded_dsn, 1, 2)
    try:
        old, recent = await add_assets(conn, user, ["image", "video"])
        files = await asset_files(conn, tmp_path, [old, recent])
        for asset_id in (old, recent):
            await conn.execute(
                "with m as (delete from images where id = $1 returning *) "
                "insert into trashed_images (id, user_id, prompt, status, quality, storage_path, "
                "thumbnail_path, metadata, created_at) select id, user_id, prompt, status, "
                "quality, storage_path, thumbnail_path, metadata, created_at from m",
                asset_id,
            )
            await conn.execute(
                "with m as (delete from videos where id = $1 returning *) "
                "insert into trashed_videos (id, user_id, prompt, status, quality, storage_path, "
                "thumbnail_path, metadata, created_at) select id, user_id, prompt, status, "
                "quality, storage_path, thumbnail_path, metadata, created_at from m",
                asset_id,
            )
        await conn.execute(
            "update trashed_images set deleted_at = now() - interval '2 days' where id = $1", old
        )
        purged = await purge_expired(pool, 86_400, PurgePolicy(ObjectStore(tmp_path)))
        assert purged == 1
        assert set(await locate(conn, [old, recent])) == {recent}
        assert await stored(conn, files[old]) == []
        assert await stored(conn, files[recent]) == list(files[recent])
    finally:
        await pool.close()
        await conn.close()


@pytest.mark.parametrize("route", ["dismiss", "undismiss", "delete", "restore", "purge"])
async def test_every_route_is_documented(seeded_dsn, make_client, route):
    client = await make_client(seeded_dsn)
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"][f"/v1/batch/{route}"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    for path in ("/v1/batch/download", "/v1/batch/undo", "/v1/batch/redo", "/v1/trash",
                 "/v1/batch/operations/{operation_id}"):  # fmt: skip
        assert path in document["paths"]
