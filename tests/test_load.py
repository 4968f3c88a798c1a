from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from fixtures.generate import (
    DEFAULT_BATCH_ASSETS,
    IMAGE_COLUMNS,
    JOB_COLUMNS,
    PROJECT_COLUMNS,
    TRUTH_COLUMNS,
    VIDEO_COLUMNS,
    Batch,
    generate,
    heavy_user_id,
)
from fixtures.load import load_dataset
from fixtures.spec import DatasetSpec, spec_for
from reference.db.migrate import migrate
from reference.db.pool import connect

NOW = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)

TABLE_COUNTS = """
select (select count(*) from projects) as projects,
       (select count(*) from images) as images,
       (select count(*) from videos) as videos,
       (select count(*) from jobs) as jobs,
       (select count(*) from fixture_dup_truth) as fixture_dup_truth
"""


@pytest.fixture
async def conn(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(fresh_dsn)
    async with connect(fresh_dsn) as connection:
        yield connection


def counts_of(batch: Batch) -> dict[str, int]:
    return {
        "projects": len(batch.projects),
        "images": len(batch.images),
        "videos": len(batch.videos),
        "jobs": len(batch.jobs),
        "fixture_dup_truth": len(batch.truth),
    }


async def test_load_matches_generator(conn: asyncpg.Connection) -> None:
    spec = spec_for("tiny", now=NOW)
    expected = generate(spec)
    report = await load_dataset(conn, spec, progress=False)

    assert dict(await conn.fetchrow(TABLE_COUNTS)) == counts_of(expected)
    assert report.rows == counts_of(expected)
    assert report.assets == expected.assets == report.truth_rows
    assert report.heavy_user_id == heavy_user_id(spec)
    assert report.summary().startswith(f"loaded {expected.assets:,} assets (")

    truth = await conn.fetch("select asset_id, user_id, family_id from fixture_dup_truth")
    assert {tuple(r) for r in truth} == set(expected.truth)


async def test_heavy_user_and_meta(conn: asyncpg.Connection) -> None:
    spec = spec_for("tiny", heavy=700, now=NOW)
    await load_dataset(conn, spec, progress=False)
    heavy = heavy_user_id(spec)
    assets = await conn.fetchval(
        "select (select count(*) from images where user_id = $1)"
        " + (select count(*) from videos where user_id = $1)",
        heavy,
    )
    assert assets == spec.heavy_assets == 700
    meta = {
        r["key"]: json.loads(r["value"]) for r in await conn.fetch("select * from fixture_meta")
    }
    assert meta["heavy_user_id"] == str(heavy)
    assert meta["spec"]["heavy_assets"] == 700
    assert meta["spec"]["now"] == NOW.isoformat()
    assert meta["counts"]["assets"] == await conn.fetchval("select count(*) from fixture_dup_truth")


async def test_values_round_trip(conn: asyncpg.Connection) -> None:
    spec = spec_for("tiny", now=NOW)
    expected = generate(spec)
    await load_dataset(conn, spec, progress=False)
    stored = await conn.fetch(
        "select id, prompt, model_type, metadata, created_at from images order by id"
    )
    by_id = {r[0]: r for r in expected.images}
    assert len(stored) == len(by_id)
    for row in stored:
        image = by_id[row["id"]]
        assert (row["prompt"], row["model_type"], row["created_at"]) == (
            image[3],
            image[6],
            image[10],
        )
        if image[9] is None:
            assert row["metadata"] is None
        else:
            assert json.loads(row["metadata"]) == json.loads(image[9])
    not_objects = await conn.fetchval(
        "select count(*) from images"
        " where metadata is not null and jsonb_typeof(metadata) <> 'object'"
    )
    assert not_objects == 0
    absent = await conn.fetchval(
        "select count(*) from images where metadata->>'workspace_dismissed' is null"
    )
    assert absent > 0.6 * len(stored)


async def test_second_load_replaces(conn: asyncpg.Connection) -> None:
    first = spec_for("tiny", seed=1, now=NOW)
    second = spec_for("tiny", seed=2, now=NOW)
    await load_dataset(conn, first, progress=False)
    report = await load_dataset(conn, second, progress=False)
    expected = generate(second)
    assert dict(await conn.fetchrow(TABLE_COUNTS)) == counts_of(expected)
    users = {r[0] for r in await conn.fetch("select distinct user_id from images")}
    assert heavy_user_id(first) not in users
    assert report.heavy_user_id == heavy_user_id(second) in users
    heavy = await conn.fetchval("select value from fixture_meta where key = 'heavy_user_id'")
    assert json.loads(heavy) == str(heavy_user_id(second))


async def test_loads_at_schema_0001(fresh_dsn: str) -> None:
    assert await migrate(fresh_dsn, target=1) == [1]
    spec = DatasetSpec(heavy_assets=120, other_users=3, mean_assets=10, now=NOW)
    async with connect(fresh_dsn) as connection:
        report = await load_dataset(connection, spec, progress=False)
        assert dict(await connection.fetchrow(TABLE_COUNTS)) == counts_of(generate(spec))
        assert report.rows == counts_of(generate(spec))


def _comparable(row: tuple[object, ...]) -> tuple[object, ...]:
    """jsonb compared as values (the server normalizes its text)."""
    return tuple(json.loads(v) if isinstance(v, str) and v[:1] == "{" else v for v in row)


@pytest.mark.parametrize(
    ("spec", "batch_assets"),
    [
        (spec_for("tiny", now=NOW), DEFAULT_BATCH_ASSETS),
        # The heavy user in many slices, small users gathered into one batch.
        (DatasetSpec(heavy_assets=3_000, other_users=30, mean_assets=20, now=NOW), 700),
    ],
    ids=["tiny", "sliced"],
)
async def test_binary_copy_loads_the_reference_rows(
    conn: asyncpg.Connection, spec: DatasetSpec, batch_assets: int
) -> None:
    """The load's binary COPY path gives, row for row and in order, the rows of the reference
    generator (one Python tuple per row)."""
    expected = generate(spec)
    await load_dataset(conn, spec, progress=False, batch_assets=batch_assets)
    for table, columns, rows in (
        ("projects", PROJECT_COLUMNS, expected.projects),
        ("images", IMAGE_COLUMNS, expected.images),
        ("videos", VIDEO_COLUMNS, expected.videos),
        ("jobs", JOB_COLUMNS, expected.jobs),
        ("fixture_dup_truth", TRUTH_COLUMNS, expected.truth),
    ):
        names = ", ".join(f"{c}::text" if c == "metadata" else c for c in columns)
        stored = await conn.fetch(f"select {names} from {table} order by ctid")
        assert len(stored) == len(rows), table
        for got, want in zip(stored, rows, strict=True):
            assert _comparable(tuple(got)) == _comparable(want), table
