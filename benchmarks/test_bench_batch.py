"""Batch claims: dismiss set-based vs the plan's one call per asset; memory while streaming a ZIP.

The plan's ``dismissAssets`` upserts ``{id, metadata: {workspace_dismissed: true}}`` into both
tables. Against this schema PostgreSQL rejects that upsert outright (NOT NULL is checked on the
proposed row before ON CONFLICT is considered), so the baseline models what it means when it
works: one whole-``metadata`` overwrite per asset per table, sequential round trips, over a
loopback connection (the plan's calls go over HTTP to PostgREST: each costs far more there).
``set_based`` is the service's operation as it runs: operation log, prior state per asset
(for undo), chunks of ``batch_chunk_size`` (default 1,000) each in its own transaction.
``bare_statements`` is the merge alone, one statement per table, without that bookkeeping.

Every dismiss case acts on the heavy user's newest 1,000 (10,000) assets in a private copy of the
dataset (``SCALE``); before each round, untimed, their metadata is put back as it was and the
tables vacuumed, so every round does the same work on the same rows. The pair behind
``speedup.batch.dismiss_<size>`` is ``plan_per_asset`` ("before") vs ``set_based`` ("after");
``bare_statements`` is the floor, outside the pair. A size the dataset cannot fill is skipped
when timed, and run on what there is under ``--benchmark-disable``.

Run: ``.venv/bin/pytest benchmarks/test_bench_batch.py``
(``BENCH_DOWNLOAD_MB`` sets the download size, 1024 by default; 32 under --benchmark-disable).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import aiohttp
import asyncpg
import pytest

from benchmarks.harness import BenchDataset, BenchLoop, open_pool, record
from fixtures.processes import ServiceProcess
from fixtures.spec import SCALES, DatasetSpec, Scale
from reference.batch.operations import Kind, PurgePolicy, Selection, create_operation, run_operation
from reference.db.pool import connect
from reference.settings import Settings, child_secrets
from reference.urls.buckets import determine_bucket
from reference.urls.object_store import ObjectStore
from reference.web.auth import issue_token
from reports.targets import load_targets

SIZES: Final = (1_000, 10_000)
#: Above this many assets of the heavy user the 10,000-asset cases (no target reads them) are
#: left out: the plan's way dismisses row by row, each statement firing the organize trigger
#: (about 16 ms a row at 1,000,000 assets), minutes a round, and the restore between rounds
#: vacuums tables of a million rows.
LARGE_SIZE_MAX_ASSETS: Final = SCALES[Scale.K100].heavy_assets
#: the plan's way is the claim's "before", the service's operation its "after"
SIDE: Final = {"plan_per_asset": "before", "set_based": "after"}

NEWEST_ASSETS: Final = """
select id, metadata::text as metadata from assets
where user_id = $1
order by created_at desc, id desc
limit $2
"""
RESTORE_METADATA: Final = """
update {table} t set metadata = s.metadata::jsonb
from unnest($1::uuid[], $2::text[]) as s(id, metadata)
where t.id = s.id
"""
BARE_DISMISS: Final = """
update {table} set metadata = coalesce(metadata, '{{}}'::jsonb) || '{{"workspace_dismissed": true}}'
where user_id = $1 and id = any($2::uuid[])
"""
PLAN_DISMISS_IMAGE: Final = "update images set metadata = $2 where id = $1"
PLAN_DISMISS_VIDEO: Final = "update videos set metadata = $2 where id = $1"
TABLES: Final = ("images", "videos")


@dataclass(frozen=True)
class Selected:
    user: UUID
    ids: list[UUID]
    metadata: list[str | None]


async def _select(dsn: str, user: UUID, size: int) -> Selected:
    async with connect(dsn) as conn:
        rows = await conn.fetch(NEWEST_ASSETS, user, size)
    return Selected(user, [r["id"] for r in rows], [r["metadata"] for r in rows])


async def _restore(pool: asyncpg.Pool, selected: Selected) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            for table in TABLES:
                sql = RESTORE_METADATA.format(table=table)
                await conn.execute(sql, selected.ids, selected.metadata)
        await conn.execute("vacuum images, videos")


async def _plan_per_asset(pool: asyncpg.Pool, selected: Selected) -> None:
    metadata = {"workspace_dismissed": True}
    async with pool.acquire() as conn:
        for asset_id in selected.ids:
            await conn.execute(PLAN_DISMISS_IMAGE, asset_id, metadata)
            await conn.execute(PLAN_DISMISS_VIDEO, asset_id, metadata)


async def _bare_statements(pool: asyncpg.Pool, selected: Selected) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for table in TABLES:
            await conn.execute(BARE_DISMISS.format(table=table), selected.user, selected.ids)


async def _set_based(pool: asyncpg.Pool, selected: Selected) -> None:
    settings = Settings()
    async with pool.acquire() as conn:
        op, _ = await create_operation(
            conn,
            selected.user,
            Kind.DISMISS,
            Selection(tuple(selected.ids)),
            max_ids=len(selected.ids),
        )
    await run_operation(
        pool, op.id, settings.batch_chunk_size, PurgePolicy(ObjectStore(Path("/nonexistent")))
    )


VARIANTS: Final[dict[str, Callable[[asyncpg.Pool, Selected], Awaitable[None]]]] = {
    "plan_per_asset": _plan_per_asset,
    "set_based": _set_based,
    "bare_statements": _bare_statements,
}


async def _dismissed(pool: asyncpg.Pool, selected: Selected) -> int:
    count: int = await pool.fetchval(
        "select count(*) from assets where id = any($1::uuid[])"
        " and metadata->>'workspace_dismissed' = 'true'",
        selected.ids,
    )
    return count


@pytest.fixture
def size_bounded(size: int, bench_spec: DatasetSpec) -> None:
    """Skips a large case at a large scale before its private copy of the dataset is made."""
    heavy = bench_spec.heavy_assets
    if size > SIZES[0] and heavy > LARGE_SIZE_MAX_ASSETS:
        pytest.skip(
            f"not applicable at this scale: dismissing {size:,} of {heavy:,} assets is measured "
            f"up to {LARGE_SIZE_MAX_ASSETS:,} assets (the plan's row-by-row way takes minutes "
            "a round); the 1,000-asset cases run"
        )


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.usefixtures("size_bounded")
def test_dismiss(
    benchmark: Any,
    bench_loop: BenchLoop,
    bench_dataset_copy: BenchDataset,
    size: int,
    variant: str,
) -> None:
    dataset = bench_dataset_copy
    selected = bench_loop.run(_select(dataset.dsn, dataset.heavy_user, size))
    if len(selected.ids) < size and not benchmark.disabled:
        pytest.skip(f"the heavy user has {len(selected.ids):,} assets, fewer than {size:,}")
    claim = f"batch.dismiss_{size}"
    benchmark.group = claim
    side = SIDE.get(variant)
    pair: dict[str, Any] = {"claim": claim, "side": side} if side else {}
    record(benchmark, dataset, **pair, variant=variant, selected=len(selected.ids))
    act = VARIANTS[variant]
    with bench_loop.enter(open_pool(dataset.dsn, 1, 2)) as pool:
        benchmark.pedantic(
            bench_loop.timed(lambda: act(pool, selected)),
            setup=lambda: bench_loop.run(_restore(pool, selected)),
            rounds=1 if benchmark.disabled else load_targets().gate.min_rounds,
            iterations=1,
        )
        assert bench_loop.run(_dismissed(pool, selected)) == len(selected.ids)


# --- download: the service's memory while it streams a large archive ---------------------------

DOWNLOAD_ASSETS: Final = """
select type, id, quality, model_type, storage_path, metadata from assets
where user_id = $1 and storage_path is not null
order by created_at desc, id desc
limit 4
"""


def _high_water_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def _download_files(dsn: str, user: UUID, storage: Path, total_mb: int) -> list[str]:
    """Large objects for a few of the user's assets, in a storage directory of their own (one
    content, so one blob on disk; the service streams it once per asset)."""
    store = ObjectStore(storage)
    async with connect(dsn, json_codecs=True) as conn:
        rows = await conn.fetch(DOWNLOAD_ASSETS, user)
        per_file = total_mb * 1024 * 1024 // len(rows)
        content = bytes(per_file)
        for r in rows:
            bucket = determine_bucket(r["type"], r["quality"], r["model_type"], r["metadata"])
            await store.put(conn, bucket, r["storage_path"], content)
    return [str(r["id"]) for r in rows]


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
        assert response.headers["X-Assets-Missing-Files"] == "0"
        expected = int(response.headers["Content-Length"])
        async for block in response.content.iter_chunked(1 << 20):
            received += len(block)
    assert received == expected
    return received


@pytest.mark.benchmark(group="batch-download-memory")
def test_download_peak_memory(
    benchmark: Any, bench_loop: BenchLoop, bench_dataset_copy: BenchDataset, tmp_path: Path
) -> None:
    total_mb = int(os.environ.get("BENCH_DOWNLOAD_MB", "32" if benchmark.disabled else "1024"))
    user = bench_dataset_copy.heavy_user
    ids = bench_loop.run(_download_files(bench_dataset_copy.dsn, user, tmp_path, total_mb))
    env = {**os.environ, "DOWNLOAD_MAX_BYTES": str(8 * 1024**3), **child_secrets({})}
    log_path = tmp_path / "service.log"
    with ServiceProcess(bench_dataset_copy.dsn, "unified", tmp_path, log_path, env=env) as service:
        assert service.child is not None
        url, pid = service.url, service.child.pid
        token = issue_token(env["JWT_SECRET"], user)
        bench_loop.run(_stream(url, token, ids[:1]))  # warm: imports, pool, buffers
        before_kb = _high_water_kb(pid)
        received = benchmark.pedantic(
            lambda: bench_loop.run(_stream(url, token, ids)), rounds=1, iterations=1
        )
        peak_kb = _high_water_kb(pid)
        record(
            benchmark,
            bench_dataset_copy,
            archive_bytes=received,
            download_mb=total_mb,
            service_vmhwm_before_mb=round(before_kb / 1024, 1),
            service_vmhwm_peak_mb=round(peak_kb / 1024, 1),
            growth_mb=round((peak_kb - before_kb) / 1024, 1),
        )
        print(
            f"\nstreamed {received / 2**20:.0f} MiB: service VmHWM {before_kb / 1024:.1f} MiB "
            f"before, {peak_kb / 1024:.1f} MiB after"
        )
        assert peak_kb - before_kb < 64 * 1024  # flat: not a timing, a bound on growth
