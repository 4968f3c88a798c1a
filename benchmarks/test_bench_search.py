"""Search: the plan's in-memory ``filterAssets`` vs the SQL endpoint over HTTP, same queries.

Both sides run the fixed query set of :mod:`benchmarks.search_queries` for the heavy user of the
shared dataset (``SCALE``; ``SCALE=100k`` for the 100,000-asset user), first page (50). The SQL
side sends them one after the other to ``GET /v1/search`` on a real socket, in the session's event
loop, and reads each body whole. The in-memory side filters and sorts the same user's assets,
already in memory (as the browser has them: loading them is not counted), and takes the first 50.

One round is the whole query set, so the pair (claim ``search.sql_vs_in_memory``: in-memory
"before", SQL "after") gives ``speedup.search.sql_vs_in_memory`` over the same work. The
per-query latencies of the SQL side's timed rounds give ``bench.search.http_p95_ms``.

    SCALE=100k .venv/bin/pytest benchmarks/test_bench_search.py
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.harness import BenchDataset, BenchLoop, RunningServer, record, serve_app
from benchmarks.search_queries import QUERY_SEED, search_queries
from reference.app import create_app
from reference.assets import Asset
from reference.search.in_memory import filter_assets
from reference.search.query import parse_query
from reference.settings import Settings
from reference.web.auth import issue_token
from reports.targets import load_targets
from tests.search_support import user_assets

CLAIM = "search.sql_vs_in_memory"


@dataclass(frozen=True)
class SearchBench:
    server: RunningServer
    headers: dict[str, str]
    assets: list[Asset]
    queries: list[dict[str, str]]

    def info(self) -> dict[str, Any]:
        return {
            "query_seed": QUERY_SEED,
            "queries": len(self.queries),
            "user_assets": len(self.assets),
        }


@pytest.fixture(scope="module")
def search_bench(bench_loop: BenchLoop, bench_dataset: BenchDataset) -> Iterator[SearchBench]:
    settings = dataclasses.replace(Settings(), database_url=bench_dataset.dsn)
    user = bench_dataset.heavy_user
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, user)}"}
    assets = bench_loop.run(user_assets(bench_dataset.dsn, user))
    with bench_loop.enter(serve_app(create_app(settings))) as server:
        yield SearchBench(server, headers, assets, search_queries(bench_dataset.spec))


def rounds_for(benchmark: Any) -> int:
    return 1 if benchmark.disabled else load_targets().gate.min_rounds


def test_in_memory_port(
    benchmark: Any, bench_dataset: BenchDataset, search_bench: SearchBench
) -> None:
    bench = search_bench

    def run_queries() -> int:
        found = 0
        for params in bench.queries:
            found += len(filter_assets(bench.assets, parse_query(params))[: int(params["limit"])])
        return found

    benchmark.group = CLAIM
    record(benchmark, bench_dataset, claim=CLAIM, side="before", **bench.info())
    found = benchmark.pedantic(run_queries, rounds=rounds_for(benchmark), iterations=1)
    assert found > 0


def test_sql_over_http(
    benchmark: Any, bench_loop: BenchLoop, bench_dataset: BenchDataset, search_bench: SearchBench
) -> None:
    bench = search_bench
    url = bench.server.url("/v1/search")
    rounds: list[list[float]] = []

    async def run_queries() -> None:
        latencies = []
        for params in bench.queries:
            started = time.perf_counter()
            async with bench.server.session.get(url, params=params, headers=bench.headers) as r:
                body = await r.read()
            latencies.append((time.perf_counter() - started) * 1000)
            if r.status != 200:
                raise AssertionError(f"{params}: {r.status} {body[:200]!r}")
        rounds.append(latencies)

    benchmark.group = CLAIM
    record(benchmark, bench_dataset, claim=CLAIM, side="after", **bench.info())
    timed = rounds_for(benchmark)
    benchmark.pedantic(
        bench_loop.timed(run_queries),
        rounds=timed,
        iterations=1,
        warmup_rounds=0 if benchmark.disabled else 1,
    )
    samples = [ms for latencies in rounds[-timed:] for ms in latencies]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    benchmark.extra_info.update(
        http_p50_ms=round(statistics.median(samples), 3), http_max_ms=round(max(samples), 3)
    )
    benchmark.extra_info["figures"] = {"bench.search.http_p95_ms": round(cuts[94], 3)}
