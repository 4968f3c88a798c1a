"""Near-duplicate figures in one run: index build from stored signatures and the duplicates
endpoint's warm latency at 10,000 and 100,000 assets, and the plan's all-pairs on 10,000.

    .venv/bin/python -m benchmarks.dedup_figures [--scales plan,100k] [--repeat 5]
    .venv/bin/python -m benchmarks.dedup_figures --methods [--scales plan,100k]

Each scale gets its own throwaway database (the provider chain), loaded with
``prepare_dataset`` and signed with ``store_signatures``. Prints medians as JSON.

``--methods`` needs no database: the heavy user's generated prompts, from text to duplicate sets,
by each of the three methods of ``benchmarks/test_bench_dedup.py`` (all-pairs only up to 10,000
prompts; above, its time is projected from 10,000 by the square of the count).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any
from uuid import UUID

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from benchmarks.test_bench_dedup import detect
from fixtures.database import create_database, drop_database, provide_database
from fixtures.generate import generate, heavy_user_id
from fixtures.prepare import prepare_dataset
from fixtures.spec import spec_for
from reference.app import create_app
from reference.db.pool import connect, create_pool
from reference.organize import dedup
from reference.organize.index import ORGANIZE, OrganizeIndexes, store_signatures
from reference.settings import Settings
from reference.web.auth import issue_token

HEAVY_PROMPTS = "select a.id, a.prompt from assets a where a.user_id = $1"


class _Row:
    __slots__ = ("id", "prompt")

    def __init__(self, id: UUID, prompt: str) -> None:
        self.id = id
        self.prompt = prompt


async def build_times(dsn: str, user: UUID, repeat: int) -> tuple[list[float], OrganizeIndexes]:
    pool = await create_pool(dsn, 1, 2)
    indexes = OrganizeIndexes(pool, 0.8, dedup.DEFAULT_THEMES, 4)
    times = []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            index = await indexes.rebuild(user)
            times.append(time.perf_counter() - started)
        print(f"  last build timings {index.timings}, sets {len(index.duplicate_sets)}",
              file=sys.stderr)  # fmt: skip
    finally:
        await pool.close()
    return times, indexes


async def endpoint_times(dsn: str, user: UUID, requests: int) -> tuple[float, list[float]]:
    settings = Settings(database_url=dsn)
    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, user)}"}
    url = str(server.make_url("/v1/organize/duplicates"))
    times = []
    try:
        async with ClientSession() as session:
            started = time.perf_counter()
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            cold = time.perf_counter() - started
            for _ in range(requests):
                started = time.perf_counter()
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                times.append(time.perf_counter() - started)
        assert app[ORGANIZE].builds == 1
    finally:
        await server.close()
    return cold, times


async def measure(scale: str, repeat: int, all_pairs: bool) -> dict[str, Any]:
    spec = spec_for(scale)
    user = heavy_user_id(spec)
    with provide_database() as info:
        dsn = await create_database(info.dsn, prefix="wsb_dedup")
        try:
            prepared = await prepare_dataset(dsn, spec, progress=True)
            async with connect(dsn) as conn:
                started = time.perf_counter()
                signed = await store_signatures(conn, progress=True)
                sign_s = time.perf_counter() - started
                rows = [_Row(r["id"], r["prompt"]) for r in await conn.fetch(HEAVY_PROMPTS, user)]
            builds, _ = await build_times(dsn, user, repeat)
            cold, warm = await endpoint_times(dsn, user, 50)
            out: dict[str, Any] = {
                "scale": scale,
                "seed": spec.seed,
                "provider": str(info.provider),
                "server_version": info.server_version,
                "assets_total": prepared.load.assets,
                "heavy_user_assets": len(rows),
                "store_signatures_s": round(sign_s, 2),
                "signatures_stored": signed,
                "index_build_median_s": round(statistics.median(builds), 3),
                "index_builds_s": [round(t, 3) for t in builds],
                "duplicates_cold_s": round(cold, 3),
                "duplicates_warm_median_ms": round(statistics.median(warm) * 1000, 2),
                "duplicates_warm_p95_ms": round(sorted(warm)[int(0.95 * len(warm))] * 1000, 2),
            }
            if all_pairs:
                started = time.perf_counter()
                found = dedup.plan_detect_duplicates(rows)
                out["plan_all_pairs_s"] = round(time.perf_counter() - started, 1)
                out["plan_all_pairs_sets"] = len(found)
            return out
        finally:
            await drop_database(info.dsn, dsn)


def method_times(scale: str, repeat: int) -> dict[str, Any]:
    spec = spec_for(scale)
    heavy = heavy_user_id(spec)
    batch = generate(spec)
    rows = [_Row(r[0], r[3]) for r in (*batch.images, *batch.videos) if r[1] == heavy]
    prompts = [r.prompt for r in rows]
    del batch
    out: dict[str, Any] = {"scale": scale, "seed": spec.seed, "prompts": len(prompts)}
    times: dict[str, list[float]] = {"datasketch": [], "vectorized": []}
    # Interleaved, each after a full collection: the two see the same machine and heap.
    for _ in range(repeat):
        for method, taken in times.items():
            gc.collect()
            started = time.perf_counter()
            result = detect(prompts, method)
            taken.append(time.perf_counter() - started)
            out[f"{method}_sets"] = len(result.sets)
    for method, taken in times.items():
        out[f"{method}_median_s"] = round(statistics.median(taken), 3)
        out[f"{method}_s"] = [round(t, 3) for t in taken]
    sample = rows[:10_000]
    started = time.perf_counter()
    dedup.plan_detect_duplicates(sample)
    measured = time.perf_counter() - started
    if len(rows) <= len(sample):
        out["all_pairs_s"] = round(measured, 1)
    else:
        out["all_pairs_projected_s"] = round(measured * (len(rows) / len(sample)) ** 2)
    return out


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="plan,100k")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-all-pairs", action="store_true")
    parser.add_argument("--methods", action="store_true", help="the three methods, no database")
    args = parser.parse_args(argv)
    if args.methods:
        print(json.dumps([method_times(s, args.repeat) for s in args.scales.split(",")], indent=2))
        return
    results = []
    for scale in args.scales.split(","):
        print(f"== {scale}", file=sys.stderr)
        all_pairs = scale == "plan" and not args.skip_all_pairs
        results.append(await measure(scale, args.repeat, all_pairs))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
