"""Benchmark helpers shared by every benchmark file; the fixtures are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fixtures.prepare import PreparedDataset
from fixtures.spec import DatasetSpec
from reference.db.pool import create_pool
from reports.targets import load_targets

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "reports" / "out" / "figures"
SIDES = ("before", "after")


def timing_disabled(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", default=False))


def bench_scale(config: pytest.Config) -> str:
    scale = os.environ.get("SCALE")
    if scale:
        return scale
    return "tiny" if timing_disabled(config) else "plan"


class BenchLoop:
    """One event loop for the session: ``run(coro)`` outside or inside the timed part."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def timed(self, factory: Callable[[], Awaitable[T]]) -> Callable[[], T]:
        """A sync callable for ``benchmark(...)`` that runs a fresh coroutine each round."""

        async def once() -> T:
            return await factory()

        return lambda: self.loop.run_until_complete(once())

    @contextlib.contextmanager
    def enter(self, context: contextlib.AbstractAsyncContextManager[T]) -> Iterator[T]:
        """An async context manager (``open_pool``, ``serve_app``) used from sync test code."""
        value = self.run(context.__aenter__())
        try:
            yield value
        except BaseException as exc:
            if not self.run(context.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.run(context.__aexit__(None, None, None))

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


@dataclass(frozen=True)
class BenchDataset:
    dsn: str
    spec: DatasetSpec
    prepared: PreparedDataset
    heavy_user: UUID
    users: tuple[UUID, ...]
    storage_dir: Path
    #: "run": the database ``make bench``'s dataset step prepared; "built": by this session.
    source: str = "built"

    @property
    def scale(self) -> str:
        return self.spec.name

    def info(self) -> dict[str, Any]:
        return {
            "scale": self.spec.name,
            "seed": self.spec.seed,
            "heavy_assets": self.spec.heavy_assets,
            "assets": self.prepared.load.assets,
            "dataset_source": self.source,
        }


#: Every timed benchmark runs at least the gate's ``min_rounds`` rounds and about this much timed
#: work, whichever is more (within ``MAX_ROUNDS``), so each median has an interval worth reading.
#: ``make bench`` raises the budget when it re-measures an inconclusive target.
ROUND_BUDGET_S: Final = 1.0
ROUND_BUDGET_ENV: Final = "BENCH_ROUND_BUDGET_S"
MAX_ROUNDS: Final = 200


def rounds_for(benchmark: Any, seconds_per_round: float) -> int:
    """Rounds for a figure with an interval: a minimum count and a minimum timing budget."""
    if benchmark.disabled:
        return 1
    minimum = load_targets().gate.min_rounds
    if seconds_per_round <= 0:
        return MAX_ROUNDS
    budget = float(os.environ.get(ROUND_BUDGET_ENV) or ROUND_BUDGET_S)
    return max(minimum, min(MAX_ROUNDS, math.ceil(budget / seconds_per_round)))


def probe_s(run: Callable[[], object]) -> float:
    """One untimed call (a warm-up) and how long it took, to size the rounds."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def record(
    benchmark: Any,
    dataset: BenchDataset | None = None,
    *,
    claim: str | None = None,
    side: str | None = None,
    **extra: Any,
) -> None:
    """Record dataset size, seed and scale, and the pair this benchmark belongs to."""
    if side is not None and side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if (claim is None) != (side is None):
        raise ValueError("claim and side go together")
    info: dict[str, Any] = dict(dataset.info()) if dataset is not None else {}
    if claim is not None:
        info["claim"] = claim
        info["side"] = side
    info.update(extra)
    benchmark.extra_info.update(info)


@contextlib.asynccontextmanager
async def open_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """The service's pool (jsonb codec, ``force_custom_plan``)."""
    pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class RunningServer:
    server: TestServer
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[RunningServer]:
    """The app on a real loopback port, with a client session; both closed on exit."""
    server = TestServer(app)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield RunningServer(server, session)
    finally:
        await session.close()
        await server.close()
