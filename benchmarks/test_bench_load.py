"""Fixture loading rate: generate and COPY the dataset of the chosen scale into tables at 0001.

Each round loads into a fresh database migrated to 0001 (keys only, as ``prepare_dataset`` loads),
created and connected outside the timed part. The rate counts the rows of the four app tables
(projects, images, videos, jobs), generation included, as ``LoadReport.rows_per_second`` does:
``bench.fixture_load.rows_per_s`` = rows / median.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from benchmarks.harness import BenchLoop, record
from fixtures.database import DatabaseInfo, create_database, drop_database
from fixtures.generate import expected_assets
from fixtures.load import LoadReport, load_dataset
from fixtures.prepare import BASE_VERSION
from fixtures.spec import DatasetSpec
from reference.db.migrate import migrate
from reports.targets import load_targets


async def _fresh_base(admin_dsn: str) -> tuple[str, asyncpg.Connection]:
    dsn = await create_database(admin_dsn, prefix="wsb_bench_load")
    await migrate(dsn, target=BASE_VERSION)
    return dsn, await asyncpg.connect(dsn)


@pytest.mark.benchmark(group="fixture_load")
def test_fixture_load(
    benchmark: Any, database: DatabaseInfo, bench_loop: BenchLoop, bench_spec: DatasetSpec
) -> None:
    opened: list[tuple[str, asyncpg.Connection]] = []
    reports: list[LoadReport] = []

    def setup() -> tuple[tuple[asyncpg.Connection], dict[str, Any]]:
        dsn, conn = bench_loop.run(_fresh_base(database.dsn))
        opened.append((dsn, conn))
        return (conn,), {}

    def load(conn: asyncpg.Connection) -> None:
        reports.append(bench_loop.run(load_dataset(conn, bench_spec, progress=False)))

    def teardown(conn: asyncpg.Connection) -> None:
        dsn, _ = opened.pop()
        bench_loop.run(conn.close())
        bench_loop.run(drop_database(database.dsn, dsn))

    rounds = load_targets().gate.min_rounds
    try:
        benchmark.pedantic(load, setup=setup, teardown=teardown, rounds=rounds)
    finally:
        for dsn, conn in opened:
            bench_loop.run(conn.close())
            bench_loop.run(drop_database(database.dsn, dsn))

    report = reports[-1]
    assert report.assets == expected_assets(bench_spec)
    rows = report.projects + report.assets + report.jobs
    record(
        benchmark,
        scale=bench_spec.name,
        seed=bench_spec.seed,
        heavy_assets=bench_spec.heavy_assets,
        assets=report.assets,
        units=rows,
        rate_figure="bench.fixture_load.rows_per_s",
    )
