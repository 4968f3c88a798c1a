"""Organize routes on a real database over real HTTP: answers, incremental updates, agreement."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from fixtures.pytest_plugin import SeededDataset
from reference.db.pool import connect, create_pool
from reference.organize import dedup
from reference.organize import index as organize_index
from reference.organize.index import (
    BUILD_RETRY_AFTER_S,
    ORGANIZE,
    OrganizeIndexes,
    SharedLsh,
    UserIndex,
    store_signatures,
)
from tests.conftest import SETTINGS, auth_headers

ACTIVE_ROWS = """
select a.id, a.prompt, a.created_at from assets a
where a.user_id = $1 and (a.metadata->>'workspace_dismissed') is distinct from 'true'
"""


METADATA = "select id, metadata::text as metadata from assets where id = any($1::uuid[])"


def _meta(raw: str | None) -> dict[str, Any]:
    return orjson.loads(raw) if raw else {}


@contextlib.asynccontextmanager
async def _signed(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with connect(dsn) as conn:
        await store_signatures(conn, progress=False)
        yield conn


def _exact_sets(rows: list[asyncpg.Record], threshold: float = 0.8) -> set[frozenset[str]]:
    """Connected components of all-pairs exact Jaccard >= threshold (the answer by brute force)."""
    sh = [dedup.shingles(r["prompt"]) for r in rows]
    parent = list(range(len(rows)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in itertools.combinations(range(len(rows)), 2):
        if dedup.jaccard(sh[i], sh[j]) >= threshold:
            parent[find(j)] = find(i)
    comps: dict[int, set[str]] = defaultdict(set)
    for i, r in enumerate(rows):
        comps[find(i)].add(str(r["id"]))
    return {frozenset(c) for c in comps.values() if len(c) > 1}


async def _all_sets(client: Any, user: uuid.UUID, limit: int = 200) -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        resp = await client.get(
            "/v1/organize/duplicates", params=params, headers=auth_headers(user)
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        sets.extend(body["sets"])
        cursor = body["next_cursor"]
        if cursor is None:
            assert len(sets) == body["total_sets"]
            assert sum(len(s["assets"]) for s in sets) == body["total_assets"]
            return sets


def _as_sets(sets: list[dict[str, Any]]) -> set[frozenset[str]]:
    return {frozenset(a["id"] for a in s["assets"]) for s in sets}


async def test_store_signatures_covers_every_asset_once(seeded_dsn: str) -> None:
    async with connect(seeded_dsn) as conn:
        total = await conn.fetchval("select count(*) from assets")
        assert await store_signatures(conn, progress=False) == total
        assert await store_signatures(conn, progress=False) == 0
        sizes = await conn.fetchval(
            "select count(distinct octet_length(signature)) from asset_signatures"
        )
        assert sizes == 1


async def test_duplicates_match_exact_all_pairs_and_page_by_cursor(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    user = seeded_template.heavy_user
    async with _signed(seeded_dsn) as conn:
        rows = await conn.fetch(ACTIVE_ROWS, user)
    client = await make_client(seeded_dsn)
    whole = await _all_sets(client, user)
    paged = await _all_sets(client, user, limit=3)
    expected = _exact_sets(list(rows))
    assert expected
    assert _as_sets(whole) == expected
    assert [s["keep"] for s in paged] == [s["keep"] for s in whole]
    created = {str(r["id"]): r["created_at"] for r in rows}
    for s in whole:
        newest = max(s["assets"], key=lambda a: (created[a["id"]], a["id"]))
        assert s["keep"] == newest["id"] == s["assets"][0]["id"]
        assert s["size"] == len(s["assets"])
    newest_at = [s["newest_at"] for s in whole]
    assert newest_at == sorted(newest_at, reverse=True)


async def test_add_dismiss_delete_and_edit_change_the_answer(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    user = seeded_template.heavy_user
    client = await make_client(seeded_dsn)
    async with _signed(seeded_dsn) as conn:
        before = _as_sets(await _all_sets(client, user))
        in_sets = set().union(*before)
        lone = next(r for r in await conn.fetch(ACTIVE_ROWS, user) if str(r["id"]) not in in_sets)
        # Add: a new asset with the same prompt restyled joins the lone asset in a new set.
        new_id = uuid.uuid4()
        await conn.execute(
            "insert into images (id, user_id, prompt, status, quality, storage_path,"
            " thumbnail_path, metadata) values ($1, $2, $3, 'completed', 'fast', 'p', 't', $4)",
            new_id, user, lone["prompt"].upper() + "!!", '{"job_id": "x"}',
        )  # fmt: skip
        added = _as_sets(await _all_sets(client, user))
        pair = frozenset({str(lone["id"]), str(new_id)})
        assert added == before | {pair}
        assert (
            await conn.fetchval("select count(*) from asset_signatures where asset_id = $1", new_id)
            == 1
        )

        # Dismiss: the set loses the dismissed asset (and a set of one is no set).
        await conn.execute(
            "update images set metadata = metadata || '{\"workspace_dismissed\": true}'"
            " where id = $1",
            new_id,
        )
        assert _as_sets(await _all_sets(client, user)) == before

        # Restore, then edit the prompt: the stale signature is dropped and recomputed.
        await conn.execute(
            "update images set metadata = metadata - 'workspace_dismissed' where id = $1", new_id
        )
        assert _as_sets(await _all_sets(client, user)) == added
        await conn.execute(
            "update images set prompt = 'nothing like any other prompt at all' where id = $1",
            new_id,
        )
        assert _as_sets(await _all_sets(client, user)) == before

        # Delete a member of an existing set.
        victim_set = sorted(before, key=len)[0]
        victim = uuid.UUID(sorted(victim_set)[0])
        await conn.execute("delete from jobs where image_id = $1 or video_id = $1", victim)
        await conn.execute("delete from images where id = $1", victim)
        await conn.execute("delete from videos where id = $1", victim)
        after = _as_sets(await _all_sets(client, user))
        shrunk = victim_set - {str(victim)}
        assert not any(str(victim) in s for s in after)
        assert all(s <= shrunk for s in after if s & victim_set)
        assert {s for s in after if not s & victim_set} == before - {victim_set}
        assert (
            await conn.fetchval("select count(*) from asset_signatures where asset_id = $1", victim)
            == 0
        )


async def test_two_instances_agree_through_changes(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    user = seeded_template.heavy_user
    first = await make_client(seeded_dsn)
    second = await make_client(seeded_dsn)
    a = await _all_sets(first, user)
    b = await _all_sets(second, user)
    assert a == b
    assert a
    resp = await first.post(
        "/v1/organize/apply", json={"action": "dismiss_duplicates"}, headers=auth_headers(user)
    )
    assert resp.status == 200
    assert await _all_sets(second, user) == await _all_sets(first, user) == []


async def test_apply_dismisses_all_but_the_newest_and_keeps_other_keys(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    user = seeded_template.heavy_user
    client = await make_client(seeded_dsn)
    sets = await _all_sets(client, user)
    resp = await client.get("/v1/organize/suggestions", headers=auth_headers(user))
    suggestion = next(s for s in (await resp.json())["suggestions"] if s["type"] == "duplicates")
    assert suggestion["count"] == len(sets)
    expected = sorted(a["id"] for s in sets for a in s["assets"][1:])
    assert suggestion["assets_to_dismiss"] == len(expected)
    members = [uuid.UUID(a["id"]) for s in sets for a in s["assets"]]
    async with connect(seeded_dsn) as conn:
        before = {r["id"]: _meta(r["metadata"]) for r in await conn.fetch(METADATA, members)}
        resp = await client.post(
            "/v1/organize/apply", json={"action": "dismiss_duplicates"}, headers=auth_headers(user)
        )
        assert resp.status == 200
        body = await resp.json()
        assert body["asset_ids"] == expected
        after = {r["id"]: _meta(r["metadata"]) for r in await conn.fetch(METADATA, members)}
    for asset_id, meta in after.items():
        old = before[asset_id]
        if str(asset_id) in expected:
            assert meta == {**old, "workspace_dismissed": True}
        else:
            assert meta == old
    assert await _all_sets(client, user) == []
    assert body["operation"]["kind"] == "dismiss"
    undone = await client.post("/v1/batch/undo", headers=auth_headers(user))
    assert undone.status == 200
    async with connect(seeded_dsn) as conn:
        restored = {r["id"]: _meta(r["metadata"]) for r in await conn.fetch(METADATA, members)}
    assert restored == before
    assert await _all_sets(client, user) == sets


async def test_groups_tags_and_suggestions(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    user = seeded_template.heavy_user
    client = await make_client(seeded_dsn, organize_themes=("portrait", "photo"))
    async with connect(seeded_dsn) as conn:
        rows = await conn.fetch(ACTIVE_ROWS, user)
        other = await conn.fetchval("select id from assets where user_id <> $1 limit 1", user)
        one = await conn.fetchrow(
            "select id, prompt, quality, model_type from assets where user_id = $1 limit 1", user
        )
    keys: dict[str, int] = defaultdict(int)
    for r in rows:
        keys[dedup.plan_prompt_key(r["prompt"])] += 1
    groups: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"by": "prompt", "limit": "7"} | ({"cursor": cursor} if cursor else {})
        resp = await client.get("/v1/organize/groups", params=params, headers=auth_headers(user))
        body = await resp.json()
        groups.extend(body["groups"])
        if (cursor := body["next_cursor"]) is None:
            break
    assert {g["key"]: g["count"] for g in groups} == keys
    counts = [g["count"] for g in groups]
    assert counts == sorted(counts, reverse=True)

    resp = await client.get(
        "/v1/organize/groups",
        params={"by": "duplicates", "limit": "200"},
        headers=auth_headers(user),
    )
    clusters = await resp.json()
    assert clusters["total_groups"] == len(rows) - sum(
        s["size"] - 1 for s in await _all_sets(client, user)
    )

    resp = await client.get(
        "/v1/organize/tags", params={"asset_id": str(one["id"])}, headers=auth_headers(user)
    )
    assert (await resp.json())["tags"] == dedup.plan_suggest_tags(
        one["prompt"], one["quality"], one["model_type"], ("portrait", "photo")
    )
    resp = await client.get("/v1/organize/tags", params={"limit": "5"}, headers=auth_headers(user))
    page = await resp.json()
    assert len(page["assets"]) == 5
    assert page["next_cursor"]
    assert page["counts"]["fast"] + page["counts"].get("high", 0) == len(rows)
    assert set(page["counts"]) <= {
        "portrait",
        "photo",
        "fast",
        "high",
        "SDXL",
        "WAN",
        "Enhanced",
        "unknown",
    }

    resp = await client.get("/v1/organize/suggestions", headers=auth_headers(user))
    body = await resp.json()
    by_type = {s["type"]: s for s in body["suggestions"]}
    assert body["assets"] == len(rows)
    assert by_type["group"]["count"] == len(keys)
    assert by_type["tags"]["tags"] == page["counts"]

    # Another user's asset is not found; bad input names the field.
    resp = await client.get(
        "/v1/organize/tags", params={"asset_id": str(other)}, headers=auth_headers(user)
    )
    assert resp.status == 404
    for path, params, field in [
        ("/v1/organize/tags", {"asset_id": "nope"}, "asset_id"),
        ("/v1/organize/duplicates", {"limit": "0"}, "limit"),
        ("/v1/organize/duplicates", {"cursor": "!!"}, "cursor"),
        ("/v1/organize/duplicates", {"cursor": "WzFd"}, "cursor"),
        ("/v1/organize/groups", {"by": "color"}, "by"),
        ("/v1/organize/groups", {"limit": "x"}, "limit"),
    ]:
        resp = await client.get(path, params=params, headers=auth_headers(user))
        assert resp.status == 400, path
        assert (await resp.json())["field"] == field
    for payload, field in [({"action": "explode"}, "action"), ([1], "body")]:
        resp = await client.post("/v1/organize/apply", json=payload, headers=auth_headers(user))
        assert resp.status == 400
        assert (await resp.json())["field"] == field
    resp = await client.post("/v1/organize/apply", data=b"{", headers=auth_headers(user))
    assert resp.status == 400
    resp = await client.get("/v1/organize/duplicates")
    assert resp.status == 401


@pytest.mark.parametrize("user_index", [1, 2])
async def test_users_see_only_their_own_sets(
    seeded_dsn: str, seeded_template: Any, make_client: Any, user_index: int
) -> None:
    user = seeded_template.users[user_index]
    client = await make_client(seeded_dsn)
    async with connect(seeded_dsn) as conn:
        mine = {str(r["id"]) for r in await conn.fetch(ACTIVE_ROWS, user)}
        rows = await conn.fetch(ACTIVE_ROWS, user)
    sets = await _all_sets(client, user)
    assert all(a["id"] in mine for s in sets for a in s["assets"])
    assert _as_sets(sets) == _exact_sets(list(rows))


async def test_duplicate_sets_carry_signed_thumbnail_urls(
    seeded_dsn: str, seeded_template: Any, make_client: Any
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from reference.urls.storage_api import verify_object_token

    user = seeded_template.heavy_user
    client = await make_client(seeded_dsn)
    sets = await _all_sets(client, user)
    assets = [a for s in sets for a in s["assets"]]
    assert assets
    async with connect(seeded_dsn) as conn:
        paths = dict(
            await conn.fetch(
                "select id::text, thumbnail_path from assets where id = any($1::uuid[])",
                [uuid.UUID(a["id"]) for a in assets],
            )
        )
    prefix = "/storage/v1/object/sign/"
    for asset in assets:
        url = urlsplit(asset["thumbnail_url"])
        bucket, _, path = url.path.removeprefix(prefix).partition("/")
        assert path == paths[asset["id"]]
        token = parse_qs(url.query)["token"][0]
        verify_object_token(SETTINGS.storage_key, token, bucket, path)


def _id_sets(index: UserIndex) -> set[frozenset[uuid.UUID]]:
    return {frozenset(index.ids[i] for i in s) for s in index.result.sets}


async def test_workers_share_one_lsh_index_on_redis(
    seeded_dsn: str, seeded_template: SeededDataset, redis_url: str, redis_prefix: str
) -> None:
    async with _signed(seeded_dsn):
        pass
    user = seeded_template.heavy_user
    pools = [await create_pool(seeded_dsn, 1, 2) for _ in range(3)]
    shared = [SharedLsh(redis_url, redis_prefix) for _ in range(2)]
    try:
        one, two = (
            OrganizeIndexes(pools[i], 0.8, dedup.DEFAULT_THEMES, 2, shared[i]) for i in (0, 1)
        )
        alone = OrganizeIndexes(pools[2], 0.8, dedup.DEFAULT_THEMES, 2)
        first = await one.get(user)
        name = shared[0].basename(user, first.version)
        assert shared[0].client.exists(f"{name}:filled")

        def key_lists() -> dict[bytes, int]:
            client = shared[0].client
            return {k: client.llen(k) for k in client.scan_iter(f"{name}_keys?*", count=10_000)}

        filled = key_lists()
        assert set(filled.values()) == {dedup.BANDS}
        second = await two.get(user)
        assert key_lists() == filled  # read, not inserted again (each list would have grown)
        assert _id_sets(first) == _id_sets(second) == _id_sets(await alone.get(user))
        assert _id_sets(first)

        async with pools[2].acquire() as conn:
            await conn.execute(
                "update images set prompt = prompt || ' again' where id = $1", first.ids[0]
            )
        newer = await one.get(user)
        assert newer.version > first.version
        stale = list(shared[0].client.scan_iter(match=f"{name}*"))
        assert stale == []
    finally:
        for s in shared:
            s.close()
        for p in pools:
            await p.close()


async def test_an_index_build_outlives_the_request_503_with_retry_after_meanwhile(
    seeded_dsn: str, seeded_template: SeededDataset, make_client: Any
) -> None:
    """With no wait allowed, the first request starts the build and is told to come back; the
    build goes on in the background, once, for every request that asks meanwhile."""
    async with _signed(seeded_dsn):
        pass
    headers = auth_headers(seeded_template.heavy_user)
    client = await make_client(seeded_dsn, organize_build_wait_ms=0)
    resp = await client.get("/v1/organize/duplicates", headers=headers)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == str(BUILD_RETRY_AFTER_S)
    body = await resp.json()
    assert body["error"] == "organize_index_building"
    assert body["retry_after_s"] == BUILD_RETRY_AFTER_S
    for _ in range(600):  # polls until the build is done, as a client honouring Retry-After
        resp = await client.get("/v1/organize/duplicates", headers=headers)
        if resp.status != 503:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["total_sets"] > 0
    assert client.app[ORGANIZE].builds == 1


async def test_the_snapshot_is_read_in_batches_and_whole(
    seeded_dsn: str, seeded_template: SeededDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = seeded_template.heavy_user
    async with _signed(seeded_dsn) as conn:
        rows = await conn.fetch(ACTIVE_ROWS, user)
    monkeypatch.setattr(organize_index, "SNAPSHOT_BATCH", 7)
    pool = await create_pool(seeded_dsn, 1, 2)
    try:
        index = await OrganizeIndexes(pool, 0.8, dedup.DEFAULT_THEMES, 2).get(user)
    finally:
        await pool.close()
    assert len(rows) > 7
    assert sorted(index.ids) == sorted(r["id"] for r in rows)
    assert _id_sets(index) == {frozenset(uuid.UUID(i) for i in s) for s in _exact_sets(list(rows))}


#: Lock requests of a session (``$1``) that wait: any table, or the asset tables only.
LOCK_WAITERS_ANY = "select count(*) from pg_locks where pid = $1 and not granted"
LOCK_WAITERS = """
select count(*) from pg_locks l join pg_class c on c.oid = l.relation
where l.pid = $1 and not l.granted and c.relname in ('images', 'videos')
"""


async def _until(conn: asyncpg.Connection, query: str, pid: int, seconds: float) -> bool:
    """Poll ``query`` (a count for ``pid``) until it is positive, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await conn.fetchval(query, pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_storing_signatures_beside_a_concurrent_index_build_cannot_deadlock(
    seeded_dsn: str,
) -> None:
    """A fresh load stores the signatures while the later migrations build indexes, some with
    ``CREATE INDEX CONCURRENTLY``. Such a build holds its table's lock for its whole run and
    waits, near its end, for every session with an older snapshot, which a session waiting for a
    table lock holds: storing that waited in ``LOCK TABLE`` for the build deadlocked with it (a
    100k scale-curve build died so). Here a writer holds the build in its first wait while the
    storing starts; once the writer ends, both must finish."""
    async with (
        connect(seeded_dsn) as writer,
        connect(seeded_dsn) as builder,
        connect(seeded_dsn) as storer,
        connect(seeded_dsn) as watcher,
    ):
        total = await watcher.fetchval("select count(*) from assets")
        writing = writer.transaction()
        await writing.start()
        await writer.execute("lock table images in row exclusive mode")
        build = asyncio.create_task(
            builder.execute("create index concurrently wsb_beside on images (created_at)")
        )
        assert await _until(watcher, LOCK_WAITERS_ANY, builder.get_server_pid(), 10.0)
        storing = asyncio.create_task(store_signatures(storer, progress=False))
        # The storing either waits in the lock queue behind the build (the deadlock's first
        # half) or keeps out of it; a second is long enough to see which.
        await _until(watcher, LOCK_WAITERS, storer.get_server_pid(), 1.0)
        await writing.commit()
        stored, _ = await asyncio.wait_for(asyncio.gather(storing, build), timeout=60)
        assert stored == total
        valid = await watcher.fetchval(
            "select i.indisvalid from pg_index i where i.indexrelid = 'wsb_beside'::regclass"
        )
        assert valid is True


async def test_storing_signatures_gives_up_on_a_lock_held_too_long(seeded_dsn: str) -> None:
    async with connect(seeded_dsn) as holder, connect(seeded_dsn) as storer:
        async with holder.transaction():
            await holder.execute("lock table videos in exclusive mode")
            with pytest.raises(TimeoutError, match="stayed locked"):
                await store_signatures(storer, progress=False, lock_wait_s=0.3)
        assert await storer.fetchval("select count(*) from asset_signatures") == 0
        assert await store_signatures(storer, progress=False) > 0
