"""A batch interrupted mid-way (connection or process killed) leaves every asset fully done or
untouched, and resuming completes it.

The test holds a row lock on a video of the second chunk: the runner's chunk 2 dismisses its
images, then waits on that video. The kill lands there, mid-transaction, after chunk 1 committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from reference.batch.operations import Kind, PurgePolicy, Selection, create_operation, run_operation
from reference.db.pool import create_pool
from reference.urls.object_store import ObjectStore
from tests._batch_support import add_assets, connect, locate, new_user, ordered_ids, wait_for
from tests.conftest import SETTINGS

CHUNK = 10
TYPES = ["image", "video"] * 15  # 30 assets: chunks of 10, each with images and videos
WAITING_BACKEND = """
select pid from pg_stat_activity
where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()
limit 1
"""
BACKEND_GONE = "select true where not exists (select 1 from pg_stat_activity where pid = $1)"
ITEMS = "select asset_id, applied from batch_operation_items where operation_id = $1"
OPERATION = "select status, done, total from batch_operations where id = $1"
ROOT = Path(__file__).resolve().parent.parent


async def _prepare(dsn: str):
    conn = await connect(dsn)
    user = new_user()
    ids = ordered_ids(len(TYPES))
    metas = [None if i % 4 == 0 else {"keep": i} for i in range(len(TYPES))]
    await add_assets(conn, user, TYPES, metas, ids=ids)
    op, _ = await create_operation(conn, user, Kind.DISMISS, Selection(tuple(ids)), max_ids=10_000)
    return conn, user, ids, dict(zip(ids, metas, strict=True)), op.id


async def _hold_lock_in_second_chunk(dsn: str, ids):
    blocker = await connect(dsn)
    transaction = blocker.transaction()
    await transaction.start()
    video = ids[CHUNK + 1]  # TYPES alternates: index 11 is a video of chunk 2
    await blocker.execute("select 1 from videos where id = $1 for update", video)
    return blocker, transaction


async def _assert_all_or_nothing(conn, op_id, original) -> int:
    """Every asset is either untouched or fully dismissed, exactly as its item says."""
    state = await locate(conn, list(original))
    items = {r["asset_id"]: r["applied"] for r in await conn.fetch(ITEMS, op_id)}
    for asset_id, meta in original.items():
        _, now = state[asset_id]
        done = {**(meta or {}), "workspace_dismissed": True}
        assert now == (done if items[asset_id] else meta), asset_id
    applied = sum(items.values())
    _status, done_count, _ = await conn.fetchrow(OPERATION, op_id)
    assert done_count == applied
    return applied


async def test_connection_killed_mid_chunk_then_resumed(seeded_dsn):
    conn, _, ids, original, op_id = await _prepare(seeded_dsn)
    pool = await create_pool(seeded_dsn, 1, 2)
    purge = PurgePolicy(ObjectStore(Path("/nonexistent")))
    blocker, transaction = await _hold_lock_in_second_chunk(seeded_dsn, ids)
    try:
        runner = asyncio.create_task(run_operation(pool, op_id, CHUNK, purge))
        pid = await wait_for(conn, WAITING_BACKEND)
        await conn.execute("select pg_terminate_backend($1)", pid)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await runner
        await transaction.rollback()

        assert await _assert_all_or_nothing(conn, op_id, original) == CHUNK
        assert (await conn.fetchrow(OPERATION, op_id))["status"] == "running"

        await run_operation(pool, op_id, CHUNK, purge)
        assert await _assert_all_or_nothing(conn, op_id, original) == len(ids)
        assert tuple(await conn.fetchrow(OPERATION, op_id)) == ("done", len(ids), len(ids))
    finally:
        with contextlib.suppress(asyncpg.InterfaceError):
            await transaction.rollback()
        await blocker.close()
        await pool.close()
        await conn.close()


def _worker(dsn: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reference.batch", "--dsn", dsn,
         "--chunk-size", str(CHUNK), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # The session's secrets, whatever the shell exported (a short one stops the worker).
        env={**os.environ, **SETTINGS.secrets(), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


async def test_process_killed_mid_chunk_then_resumed_on_start(seeded_dsn):
    conn, _, ids, original, op_id = await _prepare(seeded_dsn)
    blocker, transaction = await _hold_lock_in_second_chunk(seeded_dsn, ids)
    try:
        worker = _worker(seeded_dsn, "--operation", str(op_id))
        pid = await wait_for(conn, WAITING_BACKEND)
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        await transaction.rollback()
        await wait_for(conn, BACKEND_GONE, pid)

        assert await _assert_all_or_nothing(conn, op_id, original) == CHUNK

        resumed = _worker(seeded_dsn)  # no --operation: everything left running, as at start
        out, err = await asyncio.to_thread(resumed.communicate, timeout=60)
        assert resumed.returncode == 0, err
        assert "done: 1 operations" in out
        assert await _assert_all_or_nothing(conn, op_id, original) == len(ids)
    finally:
        with contextlib.suppress(asyncpg.InterfaceError):
            await transaction.rollback()
        await blocker.close()
        await conn.close()


async def test_process_killed_between_chunks_then_resumed(seeded_dsn):
    conn, _, ids, original, op_id = await _prepare(seeded_dsn)
    try:
        worker = _worker(seeded_dsn, "--operation", str(op_id))
        assert worker.stdout is not None
        first = await asyncio.to_thread(worker.stdout.readline)
        assert first.startswith("chunk 1 ")
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
        await wait_for(
            conn,
            "select true where not exists (select 1 from pg_stat_activity "
            "where datname = current_database() and application_name = 'workspace-bench')",
        )
        applied = await _assert_all_or_nothing(conn, op_id, original)
        assert applied % CHUNK == 0
        assert applied >= CHUNK

        resumed = _worker(seeded_dsn)
        _out, err = await asyncio.to_thread(resumed.communicate, timeout=60)
        assert resumed.returncode == 0, err
        assert await _assert_all_or_nothing(conn, op_id, original) == len(ids)
    finally:
        await conn.close()
