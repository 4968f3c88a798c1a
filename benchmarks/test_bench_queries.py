"""The plan's workspace queries at migration 0001 (keys only) vs with the performance indexes.

Same data, same run, same SQL: the data is loaded once at 0001 into a database of its own, every
query is timed ("before"), the database is migrated to the latest version and analysed, and every
query is timed again ("after"). pytest runs tests in file order, so all ``test_before`` cases run
before the migration and all ``test_after`` cases after it; a "before" case that finds the database
already migrated fails rather than measure the wrong thing. The EXPLAIN (ANALYZE) plans of both
sides go to ``reports/out/figures/plans.json`` for the report.

The queries, as the plan writes them (Task 4.1 "Optimize AssetService Queries" and
``useBatchOperations.selectJob``), with the corrected not-dismissed predicate, literal so that the
partial index can match:
    get_user_assets      images with their project title and jobs, newest first, first page;
    session_only         the same, created today and not dismissed (unpaged, as the plan);
    by_job               the assets of one job, both tables (``metadata->>'job_id' = $2``);
    filtered_first_page  first page of one status, not dismissed, both tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import pytest

from benchmarks.harness import FIGURES_DIR, BenchLoop, record, timing_disabled
from fixtures.database import DatabaseInfo, create_database, drop_database
from fixtures.generate import heavy_user_id
from fixtures.prepare import BASE_VERSION, prepare_dataset
from fixtures.spec import SCALES, DatasetSpec, Scale
from reference.db.migrate import current_version, migrate
from reference.db.pool import SERVER_SETTINGS, connect

PAGE_SIZE: Final = 50
FILTER_STATUS: Final = "completed"

_IMAGE_WITH_JOINS: Final = """
select i.id, i.user_id, i.project_id, i.prompt, i.status, i.quality, i.model_type,
       i.storage_path, i.thumbnail_path, i.metadata, i.created_at,
       p.title as project_title,
       coalesce(
           (select jsonb_agg(jsonb_build_object('quality', j.quality, 'job_type', j.job_type,
                                                'model_type', j.model_type,
                                                'metadata', j.metadata))
            from jobs j where j.image_id = i.id),
           '[]'::jsonb) as jobs
from images i
left join projects p on p.id = i.project_id
"""

GET_USER_ASSETS: Final[str] = (
    _IMAGE_WITH_JOINS
    + """where i.user_id = $1
order by i.created_at desc
limit 50"""
)

SESSION_ONLY: Final[str] = (
    _IMAGE_WITH_JOINS
    + """where i.user_id = $1
  and i.created_at >= $2
  and (i.metadata->>'workspace_dismissed') is distinct from 'true'
order by i.created_at desc"""
)

BY_JOB: Final[str] = """
select 'image' as type, id, project_id, prompt, status, quality, model_type, storage_path,
       thumbnail_path, null::real as duration_s, metadata, created_at
from images where user_id = $1 and metadata->>'job_id' = $2
union all
select 'video' as type, id, project_id, prompt, status, quality, model_type, storage_path,
       thumbnail_path, duration_s, metadata, created_at
from videos where user_id = $1 and metadata->>'job_id' = $2
"""

FILTERED_FIRST_PAGE: Final[str] = """
select * from (
    select 'image' as type, id, user_id, project_id, prompt, status, quality, model_type,
           storage_path, thumbnail_path, null::real as duration_s, metadata, created_at
    from images
    union all
    select 'video' as type, id, user_id, project_id, prompt, status, quality, model_type,
           storage_path, thumbnail_path, duration_s, metadata, created_at
    from videos
) a
where a.user_id = $1
  and a.status = $2
  and (a.metadata->>'workspace_dismissed') is distinct from 'true'
order by a.created_at desc, a.id desc
limit 50
"""

#: The largest heavy user whose queries are timed without their indexes (``max_scale`` of
#: the query targets in targets.toml).
BEFORE_MAX_ASSETS: Final = SCALES[Scale.K100].heavy_assets
BUSIEST_JOB: Final[str] = """
select metadata->>'job_id' as job_id
from images
where user_id = $1 and metadata->>'job_id' is not null
group by 1
order by count(*) desc, 1
limit 1
"""

QUERIES: Final[dict[str, str]] = {
    "get_user_assets": GET_USER_ASSETS,
    "session_only": SESSION_ONLY,
    "by_job": BY_JOB,
    "filtered_first_page": FILTERED_FIRST_PAGE,
}


@dataclass
class QueryDatabase:
    dsn: str
    spec: DatasetSpec
    conn: asyncpg.Connection
    args: dict[str, tuple[Any, ...]]
    assets: int
    version: int = BASE_VERSION
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {
            "scale": self.spec.name,
            "seed": self.spec.seed,
            "heavy_assets": self.spec.heavy_assets,
            "assets": self.assets,
            "migration": self.version,
        }


def _day_start(spec: DatasetSpec) -> datetime:
    """Start of the dataset's "today" (UTC), as the plan's session-only filter computes it."""
    return spec.reference_now.replace(hour=0, minute=0, second=0, microsecond=0)


async def _query_args(conn: asyncpg.Connection, user: UUID, day_start: datetime) -> dict[str, Any]:
    job_id = await conn.fetchval(BUSIEST_JOB, user)
    if job_id is None:
        raise RuntimeError("the heavy user has no job with assets: cannot time by_job")
    return {
        "get_user_assets": (user,),
        "session_only": (user, day_start),
        "by_job": (user, job_id),
        "filtered_first_page": (user, FILTER_STATUS),
    }


async def _explain(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> Any:
    plan = await conn.fetchval(f"explain (analyze, buffers, format json) {sql}", *args)
    return json.loads(plan) if isinstance(plan, str) else plan


@pytest.fixture(scope="module")
def query_db(
    request: pytest.FixtureRequest,
    database: DatabaseInfo,
    bench_loop: BenchLoop,
    bench_spec: DatasetSpec,
) -> Iterator[QueryDatabase]:
    if bench_spec.heavy_assets > BEFORE_MAX_ASSETS:
        pytest.skip(
            f"not applicable at this scale: the plan's queries before their indexes are measured "
            f"up to {BEFORE_MAX_ASSETS:,} assets (at {bench_spec.heavy_assets:,} the session-only "
            "query scans every job for each image: minutes a round); their targets say so"
        )
    dsn = bench_loop.run(create_database(database.dsn, prefix="wsb_bench_q"))
    try:
        prepared = bench_loop.run(
            prepare_dataset(dsn, bench_spec, progress=False, target=BASE_VERSION)
        )
        with bench_loop.enter(
            connect(dsn, json_codecs=True, server_settings=SERVER_SETTINGS)
        ) as conn:
            args = bench_loop.run(
                _query_args(conn, heavy_user_id(bench_spec), _day_start(bench_spec))
            )
            db = QueryDatabase(dsn, bench_spec, conn, args, prepared.load.assets)
            yield db
        if db.plans and not timing_disabled(request.config):
            _write_plans(db)
    finally:
        bench_loop.run(drop_database(database.dsn, dsn))


def _write_plans(db: QueryDatabase) -> None:
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "scale": db.spec.name,
        "seed": db.spec.seed,
        "heavy_assets": db.spec.heavy_assets,
        "queries": {
            name: {"sql": QUERIES[name].strip(), **sides} for name, sides in db.plans.items()
        },
    }
    (FIGURES_DIR / "plans.json").write_text(json.dumps(document, indent=2, default=str) + "\n")


async def _migrate_to_latest(db: QueryDatabase) -> None:
    await migrate(db.dsn)
    await db.conn.execute("analyze")
    db.version = await current_version(db.dsn)


def _time_query(benchmark: Any, bench_loop: BenchLoop, db: QueryDatabase, name: str) -> None:
    sql, args = QUERIES[name], db.args[name]
    rows = bench_loop.run(db.conn.fetch(sql, *args))
    if not rows:
        raise AssertionError(f"{name} returned no rows for the heavy user: nothing to time")
    side = "before" if db.version == BASE_VERSION else "after"
    benchmark.group = f"queries.{name}"
    record(benchmark, claim=f"queries.{name}", side=side, rows=len(rows), **db.info())
    result = benchmark(bench_loop.timed(lambda: db.conn.fetch(sql, *args)))
    assert len(result) == len(rows)
    plan = bench_loop.run(_explain(db.conn, sql, args))
    db.plans.setdefault(name, {})[side] = plan


@pytest.mark.parametrize("name", list(QUERIES))
def test_before(benchmark: Any, bench_loop: BenchLoop, query_db: QueryDatabase, name: str) -> None:
    if query_db.version != BASE_VERSION:
        pytest.fail("the database is already migrated: run the query benchmarks in file order")
    _time_query(benchmark, bench_loop, query_db, name)


@pytest.mark.parametrize("name", list(QUERIES))
def test_after(benchmark: Any, bench_loop: BenchLoop, query_db: QueryDatabase, name: str) -> None:
    if query_db.version == BASE_VERSION:
        bench_loop.run(_migrate_to_latest(query_db))
    _time_query(benchmark, bench_loop, query_db, name)
