"""Concurrent batch requests of one user end where the sequential order of them ends.

The model: a user's operations form one stack, so the final state is the initial state with the
operations that the log says are applied folded over it in order, each acting on exactly the
assets its selection held at that point. Random programs of two to four clients (dismiss,
undismiss, delete, restore by asset or by job, undo, redo; selections large enough to run in
the background) are sent at once over HTTP; when every operation has finished, the database
must equal the model.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.app import create_app
from tests import conftest
from tests._batch_support import add_assets, connect, new_user, wait_for
from tests.conftest import auth_headers

ASSETS = 10
JOBS = 3
TYPES = ["image", "video"] * (ASSETS // 2)
METADATA: list[dict[str, Any] | None] = [
    None, {}, {"workspace_dismissed": False}, {"keep": 1}, {"workspace_dismissed": "true"},
] * (ASSETS // 5)  # fmt: skip
#: Selections above this many assets run in the background, two assets per chunk.
INLINE_MAX = 3
EXAMPLES = int(os.environ.get("BATCH_MODEL_EXAMPLES", "30"))
KINDS = ("dismiss", "undismiss", "delete", "restore")

PLACES = """
select id, 'live' as place, metadata from images where user_id = $1
union all select id, 'live', metadata from videos where user_id = $1
union all select id, 'trash', metadata from trashed_images where user_id = $1
union all select id, 'trash', metadata from trashed_videos where user_id = $1
"""
OPERATIONS = """
select id, kind, status, target, done, total,
       (select count(*) from batch_operation_items it
        where it.operation_id = o.id and it.applied <> (o.target = 'applied')) as misplaced,
       array(select asset_id from batch_operation_items it where it.operation_id = o.id) as items
from batch_operations o where user_id = $1 order by seq
"""
ALL_FINISHED = """
select true where not exists (
    select 1 from batch_operations where user_id = $1 and status <> 'done')
"""

Step = tuple[str, tuple[str, tuple[int, ...]] | None]

selections = st.one_of(
    st.tuples(
        st.just("asset"),
        st.lists(st.integers(0, ASSETS - 1), min_size=1, max_size=ASSETS, unique=True).map(
            lambda xs: tuple(sorted(xs))
        ),
    ),
    st.tuples(
        st.just("job"),
        st.lists(st.integers(0, JOBS - 1), min_size=1, max_size=JOBS, unique=True).map(
            lambda xs: tuple(sorted(xs))
        ),
    ),
)
steps: st.SearchStrategy[Step] = st.one_of(
    st.tuples(st.sampled_from(KINDS), selections),
    st.tuples(st.sampled_from(["undo", "redo"]), st.none()),
)
programs = st.lists(st.lists(steps, min_size=1, max_size=3), min_size=2, max_size=4)


@dataclass
class User:
    id: UUID
    assets: list[UUID]
    jobs: list[str]
    initial: dict[UUID, tuple[str, Any]]
    #: The selection each accepted operation was created from, by operation id.
    selections: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)


async def new_user_with_assets(conn: asyncpg.Connection) -> User:
    user = new_user()
    jobs = [str(uuid.uuid4()) for _ in range(JOBS)]
    metas = [
        {**(meta or {}), "job_id": jobs[i % JOBS]} if i % 4 else meta
        for i, meta in enumerate(METADATA)
    ]
    assets = await add_assets(conn, user, TYPES, metas)
    return User(user, assets, jobs, await places(conn, user))


async def places(conn: asyncpg.Connection, user: UUID) -> dict[UUID, tuple[str, Any]]:
    rows = await conn.fetch(PLACES, user)
    found = {r["id"]: (r["place"], r["metadata"]) for r in rows}
    assert len(found) == len(rows), "an asset is both live and in the trash"
    return found


async def run_client(client: TestClient[Any, Any], user: User, program: Sequence[Step]) -> None:
    headers = auth_headers(user.id)
    for action, selection in program:
        body = None
        if selection is not None:
            by, indexes = selection
            ids = [str(user.assets[i]) for i in indexes] if by == "asset" else []
            jobs = [user.jobs[i] for i in indexes] if by == "job" else []
            body = {"asset_ids": ids} if by == "asset" else {"job_ids": jobs}
        response = await client.post(f"/v1/batch/{action}", json=body, headers=headers)
        answer = await response.json()
        assert response.status in (200, 202, 409), answer
        if selection is not None and response.status in (200, 202):
            user.selections[answer["operation"]["id"]] = selection


def selected(user: User, selection: tuple[str, tuple[int, ...]], metas: dict[UUID, Any]) -> set:
    by, indexes = selection
    if by == "asset":
        return {user.assets[i] for i in indexes}
    jobs = {user.jobs[i] for i in indexes}
    return {a for a in user.assets if (metas[a] or {}).get("job_id") in jobs}


def fold(user: User, operations: list[asyncpg.Record]) -> dict[UUID, tuple[str, Any]]:
    """The sequential model: applied operations in order, each on what it could select then."""
    state = dict(user.initial)
    for op in operations:
        if op["target"] != "applied":
            continue
        kind = op["kind"]
        wanted = "trash" if kind == "restore" else "live"
        chosen = selected(
            user, user.selections[str(op["id"])], {a: m for a, (_, m) in state.items()}
        )
        expected = {a for a in chosen if state[a][0] == wanted}
        assert set(op["items"]) == expected, f"{kind} {op['id']} acted on the wrong assets"
        for asset in expected:
            place, meta = state[asset]
            if kind in ("dismiss", "undismiss"):
                state[asset] = (place, {**(meta or {}), "workspace_dismissed": kind == "dismiss"})
            else:
                state[asset] = ("trash" if kind == "delete" else "live", meta)
    return state


async def check_against_model(conn: asyncpg.Connection, user: User) -> None:
    await wait_for(conn, ALL_FINISHED, user.id, limit_s=60)
    operations = await conn.fetch(OPERATIONS, user.id)
    for op in operations:
        assert (op["status"], op["done"]) == ("done", op["total"]), dict(op)
        assert op["misplaced"] == 0, f"items of {op['id']} disagree with its state"
    assert await places(conn, user.id) == fold(user, operations)


async def start(dsn: str) -> tuple[TestClient[Any, Any], asyncpg.Connection]:
    settings = conftest.test_settings(dsn, batch_inline_max=INLINE_MAX, batch_chunk_size=2)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client, await connect(dsn)


def test_concurrent_programs_end_where_the_sequential_model_ends(seeded_dsn):
    loop = asyncio.new_event_loop()
    client, conn = loop.run_until_complete(start(seeded_dsn))
    ran = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(programs)
    def example(clients: list[list[Step]]) -> None:
        nonlocal ran
        ran += 1

        async def run() -> None:
            user = await new_user_with_assets(conn)
            await asyncio.gather(*(run_client(client, user, program) for program in clients))
            await check_against_model(conn, user)

        loop.run_until_complete(run())

    started = time.monotonic()
    try:
        example()
    finally:
        print(f"\nconcurrency model: {ran} random sequences in {time.monotonic() - started:.1f} s")
        loop.run_until_complete(conn.close())
        loop.run_until_complete(client.close())
        loop.close()


async def test_two_undos_at_once_undo_both_in_order(seeded_dsn, make_client):
    """Delete, restore, then two undos at the same moment: the second waits its turn."""
    conn = await connect(seeded_dsn)
    try:
        user = new_user()
        ids = await add_assets(conn, user, ["image", "video"] * 100)
        client = await make_client(seeded_dsn)
        headers = auth_headers(user)
        selection = {"asset_ids": [str(i) for i in ids]}
        assert (await client.post("/v1/batch/delete", json=selection, headers=headers)).ok
        assert (await client.post("/v1/batch/restore", json=selection, headers=headers)).ok

        first, second = await asyncio.gather(
            client.post("/v1/batch/undo", headers=headers),
            client.post("/v1/batch/undo", headers=headers),
        )
        assert (first.status, second.status) == (200, 200), await second.json()
        undone = {(await r.json())["operation"]["kind"] for r in (first, second)}
        assert undone == {"delete", "restore"}
        assert {place for place, _ in (await places(conn, user)).values()} == {"live"}
    finally:
        await conn.close()


async def test_undo_while_a_background_undo_runs_is_refused_naming_it(seeded_dsn, make_client):
    conn = await connect(seeded_dsn)
    blocker = await connect(seeded_dsn)
    try:
        user = new_user()
        ids = await add_assets(conn, user, ["image"] * 30)
        client = await make_client(seeded_dsn, batch_inline_max=10, batch_chunk_size=5)
        headers = auth_headers(user)
        selection = {"asset_ids": [str(i) for i in ids]}
        for route in ("delete", "restore"):
            response = await client.post(f"/v1/batch/{route}", json=selection, headers=headers)
            await wait_for(conn, ALL_FINISHED, user)
            assert response.status == 202
        async with blocker.transaction():
            await blocker.execute("select 1 from images where id = $1 for update", max(ids))
            first = await client.post("/v1/batch/undo", headers=headers)
            assert first.status == 202
            running = (await first.json())["operation"]
            second = await client.post("/v1/batch/undo", headers=headers)
            refusal = await second.json()
        assert second.status == 409, refusal
        assert refusal["operation_id"] == running["id"]
        await wait_for(conn, ALL_FINISHED, user)
        assert {place for place, _ in (await places(conn, user)).values()} == {"trash"}
    finally:
        await blocker.close()
        await conn.close()
