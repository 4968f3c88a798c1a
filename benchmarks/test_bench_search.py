"""Search: the SQL endpoint over HTTP vs the plan's in-memory ``filterAssets``, same queries.

The dataset (``SCALE``, default ``plan``; ``SCALE=100k`` for the 100,000-asset user) is loaded
once, the service runs on a real socket in the benchmark's event loop, and every round sends the
fixed query set of :mod:`benchmarks.search_queries` for the heavy user, one request after the
other, first page (50) and exact total. The in-memory side filters and sorts the same user's
assets, already in memory (as the browser has them: loading them is not counted), and takes the
first 50. Per-query latencies of the timed rounds give the p50/p95 in ``extra_info``.

    SCALE=100k .venv/bin/pytest benchmarks/test_bench_search.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from benchmarks.search_queries import QUERY_SEED, search_queries
from fixtures.database import DatabaseInfo, create_database, drop_database
from fixtures.generate import DatasetSpec, heavy_user_id, spec_for
from fixtures.prepare import prepare_dataset
from reference.app import create_app
from reference.assets import Asset
from reference.auth import issue_token
from reference.filter_port import filter_assets
from reference.search import parse_query
from reference.settings import Settings
from tests.search_support import user_assets

SCALE = os.environ.get("SCALE", "plan")
HTTP_ROUNDS = 5
MEMORY_ROUNDS = 3
GROUP = "search: SQL endpoint vs in-memory filterAssets"


@dataclass
class SearchBench:
    loop: asyncio.AbstractEventLoop
    spec: DatasetSpec
    session: aiohttp.ClientSession
    headers: dict[str, str]
    assets: list[Asset]
    queries: list[dict[str, str]]
    figures: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {
            "scale": self.spec.name,
            "seed": self.spec.seed,
            "query_seed": QUERY_SEED,
            "queries": len(self.queries),
            "user_assets": len(self.assets),
        }


async def _prepare(admin_dsn: str, spec: DatasetSpec) -> str:
    dsn = await create_database(admin_dsn, prefix="wsb_bench_search")
    await prepare_dataset(dsn, spec, progress=True)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("vacuum analyze")
    finally:
        await conn.close()
    return dsn


@pytest.fixture(scope="module")
def search_bench(database: DatabaseInfo) -> Iterator[SearchBench]:
    spec = spec_for(SCALE)
    loop = asyncio.new_event_loop()
    dsn = loop.run_until_complete(_prepare(database.dsn, spec))
    settings = dataclasses.replace(Settings(), database_url=dsn)
    runner = web.AppRunner(create_app(settings), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")

    session = loop.run_until_complete(open_session())
    user = heavy_user_id(spec)
    assets = loop.run_until_complete(user_assets(dsn, user))
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, user)}"}
    try:
        yield SearchBench(loop, spec, session, headers, assets, search_queries(spec))
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(drop_database(database.dsn, dsn))
        loop.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": statistics.median(samples), "p95_ms": cuts[94], "max_ms": max(samples)}


@pytest.mark.benchmark(group=GROUP)
def test_search_sql_over_http(benchmark: Any, search_bench: SearchBench) -> None:
    bench = search_bench
    rounds: list[list[float]] = []

    async def run_queries() -> None:
        latencies = []
        for params in bench.queries:
            started = time.perf_counter()
            async with bench.session.get("/v1/search", params=params, headers=bench.headers) as r:
                body = await r.read()
                if r.status != 200:
                    raise AssertionError(f"{params}: {r.status} {body[:200]!r}")
            latencies.append((time.perf_counter() - started) * 1000)
        rounds.append(latencies)

    benchmark.pedantic(
        lambda: bench.loop.run_until_complete(run_queries()),
        rounds=HTTP_ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    samples = [ms for latencies in rounds[-HTTP_ROUNDS:] for ms in latencies]
    figures = percentiles(samples)
    bench.figures["http_p50_ms"] = figures["p50_ms"]
    bench.figures["http_set_ms"] = statistics.median(sum(r) for r in rounds[-HTTP_ROUNDS:])
    benchmark.extra_info.update(bench.info())
    benchmark.extra_info.update({f"http_{k}": round(v, 3) for k, v in figures.items()})
    benchmark.extra_info["bench.search.http_p95_ms"] = round(figures["p95_ms"], 3)


@pytest.mark.benchmark(group=GROUP)
def test_search_in_memory_port(benchmark: Any, search_bench: SearchBench) -> None:
    bench = search_bench
    rounds: list[list[float]] = []

    def run_queries() -> None:
        latencies = []
        for params in bench.queries:
            started = time.perf_counter()
            page = filter_assets(bench.assets, parse_query(params))[: int(params["limit"])]
            latencies.append((time.perf_counter() - started) * 1000)
            del page
        rounds.append(latencies)

    benchmark.pedantic(run_queries, rounds=MEMORY_ROUNDS, iterations=1)
    samples = [ms for latencies in rounds[-MEMORY_ROUNDS:] for ms in latencies]
    figures = percentiles(samples)
    benchmark.extra_info.update(bench.info())
    benchmark.extra_info.update({f"memory_{k}": round(v, 3) for k, v in figures.items()})
    if "http_p50_ms" in bench.figures:
        # Whole query set, median round: the same work on both sides.
        set_ms = statistics.median(sum(r) for r in rounds[-MEMORY_ROUNDS:])
        speedup = set_ms / bench.figures["http_set_ms"]
        benchmark.extra_info["speedup.search.sql_vs_in_memory"] = round(speedup, 2)
        p50_ratio = figures["p50_ms"] / bench.figures["http_p50_ms"]
        benchmark.extra_info["speedup_p50_query"] = round(p50_ratio, 2)
