"""Batch claims: dismiss set-based vs the plan's one call per asset; memory while streaming a ZIP.

The plan's ``dismissAssets`` upserts ``{id, metadata: {workspace_dismissed: true}}`` into both
tables. Against this schema PostgreSQL rejects that upsert outright (NOT NULL is checked on the
proposed row before ON CONFLICT is considered), so the baseline models what it means when it
works: one whole-``metadata`` overwrite per asset per table, sequential round trips, over a
loopback connection (the plan's calls go over HTTP to PostgREST: each costs far more there).
``set_based`` is the service's operation as it runs: operation log, prior state per asset
(for undo), chunks of ``batch_chunk_size`` (default 1,000) each in its own transaction.
``bare_statements`` is the merge alone, one statement per table, without that bookkeeping.

Run: ``.venv/bin/pytest benchmarks/test_bench_batch.py --benchmark-only``
(``BENCH_DOWNLOAD_MB`` sets the download size, 1024 by default; 32 under --benchmark-disable).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from reference.auth import issue_token
from reference.batch_ops import Kind, PurgePolicy, Selection, create_operation, run_operation
from reference.buckets import determine_bucket, object_file
from reference.db import create_pool
from reference.migrate import migrate
from reference.settings import Settings

SEED = 20_250_108
ROOT = Path(__file__).resolve().parent.parent
BARE_DISMISS_IMAGES = """
update images set metadata = coalesce(metadata, '{}'::jsonb) || '{"workspace_dismissed": true}'
where user_id = $1 and id = any($2::uuid[])
"""
BARE_DISMISS_VIDEOS = """
update videos set metadata = coalesce(metadata, '{}'::jsonb) || '{"workspace_dismissed": true}'
where user_id = $1 and id = any($2::uuid[])
"""
PLAN_DISMISS_IMAGE = "update images set metadata = $2 where id = $1"
PLAN_DISMISS_VIDEO = "update videos set metadata = $2 where id = $1"
INSERT_ASSETS = """
insert into {table} (id, user_id, prompt, status, quality, storage_path, thumbnail_path, metadata)
select id, $2::uuid, 'a prompt', 'completed', 'high', $2::uuid::text || '/' || id || '{ext}',
       $2::uuid::text || '/' || id || '_thumb.webp', jsonb_build_object('job_id', 'j' || (n / 4))
from unnest($1::uuid[]) with ordinality as t(id, n)
"""


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def _dataset(dsn: str, size: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await migrate(dsn)
    user = uuid.UUID(int=SEED)
    ids = [uuid.UUID(int=SEED * 1_000_000 + i) for i in range(size)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(INSERT_ASSETS.format(table="images", ext=".png"), ids[::2], user)
        await conn.execute(INSERT_ASSETS.format(table="videos", ext=".mp4"), ids[1::2], user)
        await conn.execute("analyze images; analyze videos")
    finally:
        await conn.close()
    return user, ids


async def _plan_per_asset(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> None:
    metadata = {"workspace_dismissed": True}
    async with pool.acquire() as conn:
        for asset_id in ids:
            await conn.execute(PLAN_DISMISS_IMAGE, asset_id, metadata)
            await conn.execute(PLAN_DISMISS_VIDEO, asset_id, metadata)


async def _bare_statements(pool: asyncpg.Pool, user: uuid.UUID, ids: list[uuid.UUID]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(BARE_DISMISS_IMAGES, user, ids)
        await conn.execute(BARE_DISMISS_VIDEOS, user, ids)


async def _set_based(pool: asyncpg.Pool, user: uuid.UUID, ids: list[uuid.UUID]) -> None:
    settings = Settings()
    async with pool.acquire() as conn:
        op, _ = await create_operation(
            conn, user, Kind.DISMISS, Selection(tuple(ids)), max_ids=len(ids)
        )
    await run_operation(pool, op.id, settings.batch_chunk_size, PurgePolicy(Path("/nonexistent")))


@pytest.mark.parametrize("size", [1_000, 10_000])
@pytest.mark.parametrize("variant", ["set_based", "bare_statements", "plan_per_asset"])
def test_dismiss(benchmark, loop, fresh_dsn, size, variant):
    benchmark.group = f"batch.dismiss_{size}"
    benchmark.extra_info.update(dataset_assets=size, seed=SEED, variant=variant)
    # the pair behind speedup.batch.dismiss_<size>: the plan's per-asset calls vs the service's
    # set-based operation; bare_statements is the floor, outside the pair
    side = {"plan_per_asset": "before", "set_based": "after"}.get(variant)
    if side is not None:
        benchmark.extra_info.update(claim=f"batch.dismiss_{size}", side=side)
    user, ids = loop.run_until_complete(_dataset(fresh_dsn, size))
    pool = loop.run_until_complete(create_pool(fresh_dsn, 1, 2))
    try:
        if variant == "set_based":
            work: Any = lambda: loop.run_until_complete(_set_based(pool, user, ids))  # noqa: E731
        elif variant == "bare_statements":
            work = lambda: loop.run_until_complete(_bare_statements(pool, user, ids))  # noqa: E731
        else:
            work = lambda: loop.run_until_complete(_plan_per_asset(pool, ids))  # noqa: E731
        benchmark.pedantic(work, rounds=5 if size <= 1_000 else 3, iterations=1, warmup_rounds=0)
    finally:
        loop.run_until_complete(pool.close())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _high_water_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def _download_files(dsn: str, storage: Path, total_mb: int) -> tuple[uuid.UUID, list[str]]:
    user, ids = await _dataset(dsn, 4)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select 'image' as type, id, quality, model_type, storage_path from images "
            "union all select 'video', id, quality, model_type, storage_path from videos"
        )
    finally:
        await conn.close()
    per_file = total_mb * 1024 * 1024 // len(rows)
    for r in rows:
        path = object_file(
            storage, determine_bucket(r["type"], r["quality"], None, {}), r["storage_path"]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:  # sparse: the service still reads every byte
            handle.truncate(per_file)
    return user, [str(i) for i in ids]


async def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the service exited")
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("service did not start")


async def _stream(url: str, token: str, ids: list[str]) -> int:
    received = 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/batch/download",
            json={"asset_ids": ids},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 200
        expected = int(response.headers["Content-Length"])
        async for block in response.content.iter_chunked(1 << 20):
            received += len(block)
    assert received == expected
    return received


def test_download_peak_memory(benchmark, loop, fresh_dsn, tmp_path):
    disabled = getattr(benchmark, "disabled", False)
    total_mb = int(os.environ.get("BENCH_DOWNLOAD_MB", "32" if disabled else "1024"))
    benchmark.group = "batch-download-memory"
    user, ids = loop.run_until_complete(_download_files(fresh_dsn, tmp_path, total_mb))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": fresh_dsn, "PORT": str(port), "STORAGE_DIR": str(tmp_path),
           "DOWNLOAD_MAX_BYTES": str(8 * 1024**3), "PYTHONPATH": str(ROOT)}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "reference"], cwd=ROOT, env=env)
    try:
        loop.run_until_complete(_wait_healthy(url, process))
        token = issue_token(Settings().jwt_secret, user)
        loop.run_until_complete(_stream(url, token, ids[:1]))  # warm: imports, pool, buffers
        before_kb = _high_water_kb(process.pid)
        received = benchmark.pedantic(
            lambda: loop.run_until_complete(_stream(url, token, ids)), rounds=1, iterations=1
        )
        peak_kb = _high_water_kb(process.pid)
        benchmark.extra_info.update(
            archive_bytes=received,
            download_mb=total_mb,
            seed=SEED,
            service_vmhwm_before_mb=round(before_kb / 1024, 1),
            service_vmhwm_peak_mb=round(peak_kb / 1024, 1),
            growth_mb=round((peak_kb - before_kb) / 1024, 1),
        )
        print(
            f"\nstreamed {received / 2**20:.0f} MiB: service VmHWM {before_kb / 1024:.1f} MiB "
            f"before, {peak_kb / 1024:.1f} MiB after"
        )
        assert peak_kb - before_kb < 64 * 1024  # flat: not a timing, a bound on growth
    finally:
        process.terminate()
        process.wait(timeout=30)
