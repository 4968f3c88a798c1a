"""All-pairs vs MinHash/LSH near-duplicate detection, and the organize index and endpoint.

Three ways to the same duplicate sets, side by side: the plan's all-pairs; datasketch as its
documentation shows it (a ``MinHash`` per prompt through ``MinHash.bulk``, then ``MinHashLSH``);
and the vectorized path (every signature at once with numpy, bit-for-bit datasketch's, then the
same ``MinHashLSH``). Both MinHash paths confirm candidates exactly.

Scale from ``SCALE`` (``benchmarks/conftest.py``; default ``plan``: a 10,000-asset user). The
claim ``dedup.lsh_vs_all_pairs`` (all-pairs "before", vectorized MinHash/LSH "after") compares
both on the heavy user's first ``PAIR_SAMPLE`` prompts, so that each side gets enough rounds for
an interval (all pairs of 10,000 prompts take about a minute a round; quadratic, so the speed-up
on the sample understates the one at full size, which ``benchmarks/dedup_figures.py``
projects). The MinHash methods also run on every prompt of the user, beside each other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from benchmarks.harness import BenchDataset, BenchLoop, probe_s, record, rounds_for
from fixtures.spec import DatasetSpec
from reference.app import create_app
from reference.db.pool import connect, create_pool
from reference.organize import dedup
from reference.organize.index import OrganizeIndexes
from reference.settings import Settings
from reference.web.auth import issue_token

PAIR_SAMPLE = 2_000
#: The "every prompt" methods hash and band the user's first this many prompts (all of them up
#: to SCALE=100k): a round over 1,000,000 prompts, datasketch's per-prompt path above all,
#: takes minutes. The figures say how many of how many were compared.
EVERY_PROMPT_MAX = 100_000
DISABLED_SAMPLE = 500
CLAIM = "dedup.lsh_vs_all_pairs"


@dataclass(frozen=True)
class _Row:
    id: UUID
    prompt: str


@dataclass(frozen=True)
class DedupData:
    loop: asyncio.AbstractEventLoop
    dsn: str
    spec: DatasetSpec
    user: UUID
    rows: list[_Row]

    def info(self, **extra: Any) -> dict[str, Any]:
        return {
            "scale": self.spec.name,
            "seed": self.spec.seed,
            "heavy_assets": self.spec.heavy_assets,
            "assets": len(self.rows),
            **extra,
        }


@pytest.fixture(scope="module")
def dedup_data(bench_loop: BenchLoop, bench_dataset: BenchDataset) -> DedupData:
    """The heavy user's prompts from the shared dataset (signatures stored by prepare_dataset)."""

    async def fetch() -> list[_Row]:
        async with connect(bench_dataset.dsn) as conn:
            return await conn.fetch(
                "select id, prompt from assets where user_id = $1", bench_dataset.heavy_user
            )

    records = bench_loop.run(fetch())
    rows = [_Row(r["id"], r["prompt"]) for r in records]
    return DedupData(
        bench_loop.loop, bench_dataset.dsn, bench_dataset.spec, bench_dataset.heavy_user, rows
    )


def sample(benchmark: Any, dedup_data: DedupData) -> list[_Row]:
    return dedup_data.rows[: DISABLED_SAMPLE if benchmark.disabled else PAIR_SAMPLE]


@pytest.mark.benchmark(group=CLAIM)
def test_plan_all_pairs(benchmark: Any, dedup_data: DedupData) -> None:
    rows = sample(benchmark, dedup_data)
    benchmark.extra_info.update(dedup_data.info(compared=len(rows), method="plan all-pairs"))
    record(benchmark, claim=CLAIM, side="before")
    rounds = rounds_for(benchmark, probe_s(lambda: dedup.plan_detect_duplicates(rows)))
    found = benchmark.pedantic(
        dedup.plan_detect_duplicates, args=(rows,), rounds=rounds, iterations=1
    )
    assert found


def detect(prompts: list[str], minhash: str) -> dedup.DuplicateResult:
    sh = [dedup.shingles(p) for p in prompts]
    keys = [dedup.text_key(p) for p in prompts]
    sigs = dedup.signatures(sh) if minhash == "vectorized" else dedup.datasketch_minhashes(sh)
    return dedup.find_duplicates(keys, sigs, lambda i: sh[i])


@pytest.mark.benchmark(group=CLAIM)
def test_minhash_lsh_same_sample(benchmark: Any, dedup_data: DedupData) -> None:
    prompts = [r.prompt for r in sample(benchmark, dedup_data)]
    benchmark.extra_info.update(
        dedup_data.info(compared=len(prompts), method="vectorized minhash + MinHashLSH + confirm")
    )
    record(benchmark, claim=CLAIM, side="after")
    rounds = rounds_for(benchmark, probe_s(lambda: detect(prompts, "vectorized")))
    result = benchmark.pedantic(detect, args=(prompts, "vectorized"), rounds=rounds, iterations=1)
    assert result.sets


#: The warm endpoint waits this long for the index build its first request starts.
WARM_BUILD_TIMEOUT_S: Final = 600.0
WARM_POLL_S: Final = 0.25
EVERY_PROMPT_METHODS: Final = {
    "vectorized": "normalize + vectorized minhash + MinHashLSH + confirm",
    "datasketch": "normalize + MinHash.bulk per prompt + MinHashLSH + confirm",
}


@pytest.mark.benchmark(group="dedup.every_prompt")
@pytest.mark.parametrize("method", list(EVERY_PROMPT_METHODS))
def test_every_prompt(benchmark: Any, dedup_data: DedupData, method: str) -> None:
    prompts = [r.prompt for r in dedup_data.rows[:EVERY_PROMPT_MAX]]
    benchmark.extra_info.update(
        dedup_data.info(
            compared=len(prompts),
            compared_note=f"first {len(prompts):,} of {len(dedup_data.rows):,} prompts",
            method=EVERY_PROMPT_METHODS[method],
        )
    )
    rounds = rounds_for(benchmark, probe_s(lambda: detect(prompts, method)))
    result = benchmark.pedantic(detect, args=(prompts, method), rounds=rounds, iterations=1)
    assert result.sets
    if method != "vectorized":
        # Both signature paths find the same sets: they are the same MinHash.
        assert result.sets == detect(prompts, "vectorized").sets


@pytest.mark.benchmark(group="dedup.index_build")
def test_index_build_from_stored_signatures(benchmark: Any, dedup_data: DedupData) -> None:
    loop = dedup_data.loop
    pool = loop.run_until_complete(create_pool(dedup_data.dsn, 1, 2))
    indexes = OrganizeIndexes(pool, dedup.DEFAULT_THRESHOLD, dedup.DEFAULT_THEMES, 2)
    try:
        benchmark.extra_info.update(dedup_data.info())
        index = benchmark.pedantic(
            lambda: loop.run_until_complete(indexes.rebuild(dedup_data.user)), rounds=5
        )
        assert index.duplicate_sets
        assert not index.missing_signatures
        benchmark.extra_info["timings_s"] = index.timings
    finally:
        loop.run_until_complete(pool.close())


@pytest.mark.benchmark(group="dedup.endpoint")
def test_duplicates_endpoint_warm(benchmark: Any, dedup_data: DedupData) -> None:
    loop = dedup_data.loop
    settings = Settings(database_url=dedup_data.dsn)
    server = TestServer(create_app(settings))
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, dedup_data.user)}"}

    async def start() -> ClientSession:
        await server.start_server()
        return ClientSession()

    session = loop.run_until_complete(start())
    url = str(server.make_url("/v1/organize/duplicates"))

    async def get() -> int:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def built() -> int:
        """The first request starts the index build and, past ORGANIZE_BUILD_WAIT_MS, answers
        503 while it runs (a minute at 1,000,000 assets): warm means after it."""
        status = await get()
        for _ in range(int(WARM_BUILD_TIMEOUT_S / WARM_POLL_S)):
            if status != 503:
                break
            await asyncio.sleep(WARM_POLL_S)
            status = await get()
        return status

    try:
        assert loop.run_until_complete(built()) == 200
        benchmark.extra_info.update(dedup_data.info(warm=True))
        status = benchmark.pedantic(lambda: loop.run_until_complete(get()), rounds=50)
        assert status == 200
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(server.close())
