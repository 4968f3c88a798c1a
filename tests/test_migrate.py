"""The migration runner, and the corrected partial index of the plan's migration."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from reference.db.migrate import SQL_DIR, MigrationError, discover, migrate
from reference.db.pool import connect

ALL_VERSIONS = [m.version for m in discover()]
PLAN_PREDICATE = "(metadata->>'workspace_dismissed')::boolean = false"
FIXED_PREDICATE = "(metadata->>'workspace_dismissed') IS DISTINCT FROM 'true'"


async def ledger(dsn: str) -> list[int]:
    async with connect(dsn) as conn:
        return [r[0] for r in await conn.fetch("select version from schema_migrations order by 1")]


async def test_runs_every_migration_once_then_nothing(fresh_dsn: str) -> None:
    assert await migrate(fresh_dsn) == ALL_VERSIONS
    assert await migrate(fresh_dsn) == []
    assert await ledger(fresh_dsn) == ALL_VERSIONS


async def test_stops_at_target_and_resumes(fresh_dsn: str) -> None:
    assert await migrate(fresh_dsn, target=1) == [1]
    async with connect(fresh_dsn) as conn:
        indexes = await conn.fetchval(
            "select count(*) from pg_indexes where tablename = 'images' and indexname like 'idx_%'"
        )
    assert indexes == 0
    assert await migrate(fresh_dsn) == ALL_VERSIONS[1:]


async def test_concurrent_runners_apply_each_migration_once(fresh_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_dsn) for _ in range(4)))
    applied = sorted(v for result in results for v in result)
    assert applied == ALL_VERSIONS
    assert await ledger(fresh_dsn) == ALL_VERSIONS


def test_two_processes_at_once(fresh_dsn: str) -> None:
    command = [sys.executable, "-m", "reference.db.migrate", fresh_dsn]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum("up to date" in out for out in outputs) <= 1
    assert asyncio.run(ledger(fresh_dsn)) == ALL_VERSIONS


async def test_edited_migration_is_refused(fresh_dsn: str, tmp_path: Path) -> None:
    for path in SQL_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    await migrate(fresh_dsn, sql_dir=tmp_path)
    first = sorted(tmp_path.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(fresh_dsn, sql_dir=tmp_path)


#: What 0004 built before it stopped building the raw-prompt trigram index (0009 drops it).
RAW_PROMPT_TRIGRAM = """
create index if not exists idx_images_user_prompt_trgm
    on images using gin (user_id, prompt gin_trgm_ops);
create index if not exists idx_videos_user_prompt_trgm
    on videos using gin (user_id, prompt gin_trgm_ops);
"""
INDEX_DEFINITIONS = (
    "select indexname, indexdef from pg_indexes where schemaname = 'public' order by indexname"
)


async def _indexes(dsn: str) -> list[tuple[str, str]]:
    async with connect(dsn) as conn:
        return [tuple(r) for r in await conn.fetch(INDEX_DEFINITIONS)]


def _copy_migrations(to: Path) -> Path:
    for path in SQL_DIR.glob("*.sql"):
        shutil.copy(path, to / path.name)
    return sorted(to.glob("0004_*.sql"))[0]


def test_0004_lists_the_text_databases_applied_before() -> None:
    (search,) = [m for m in discover() if m.version == 4]
    assert search.superseded == {"9f3591bfaae3f12d"}
    assert search.accepts("9f3591bfaae3f12d")
    assert search.accepts(search.checksum)
    assert not search.accepts("0" * 16)


async def test_a_superseded_text_is_accepted_and_leaves_the_same_schema(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """A database that applied 0004 when it still built the raw-prompt trigram index migrates
    on, once the file lists that text's checksum, to the very indexes a new database gets."""
    earlier_dir, later_dir = tmp_path / "earlier", tmp_path / "later"
    earlier_dir.mkdir()
    later_dir.mkdir()
    earlier = _copy_migrations(earlier_dir)
    earlier.write_text(earlier.read_text() + RAW_PROMPT_TRIGRAM)
    (old,) = [m for m in discover(earlier_dir) if m.version == 4]
    later = _copy_migrations(later_dir)
    later.write_text(f"-- migrate: supersedes {old.checksum}\n" + later.read_text())
    assert await migrate(fresh_dsn, target=4, sql_dir=earlier_dir) == ALL_VERSIONS[:4]
    async with connect(fresh_dsn) as conn:
        assert await conn.fetchval("select to_regclass('idx_images_user_prompt_trgm')")
    assert await migrate(fresh_dsn, sql_dir=later_dir) == ALL_VERSIONS[4:]
    async with connect(fresh_dsn) as conn:
        await conn.execute("create database wsb_test_fresh_schema")
    fresh = fresh_dsn.rsplit("/", 1)[0] + "/wsb_test_fresh_schema"
    try:
        await migrate(fresh)
        assert await _indexes(fresh_dsn) == await _indexes(fresh)
    finally:
        async with connect(fresh_dsn) as conn:
            await conn.execute("drop database wsb_test_fresh_schema with (force)")


async def test_an_edit_not_listed_as_superseded_is_still_refused(
    fresh_dsn: str, tmp_path: Path
) -> None:
    search = _copy_migrations(tmp_path)
    await migrate(fresh_dsn, target=4, sql_dir=tmp_path)
    search.write_text(search.read_text() + RAW_PROMPT_TRIGRAM)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(fresh_dsn, sql_dir=tmp_path)


async def test_invalid_concurrent_index_is_rebuilt(fresh_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_table.sql").write_text(
        "create table t (k int);\ninsert into t values (1), (1);\n"
    )
    (tmp_path / "0002_unique.sql").write_text(
        "-- migrate: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_k ON t (k);\n"
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await migrate(fresh_dsn, sql_dir=tmp_path)
    async with connect(fresh_dsn) as conn:
        valid = "select indisvalid from pg_index where indexrelid = 't_k'::regclass"
        assert await conn.fetchval(valid) is False
        await conn.execute("delete from t where ctid = (select max(ctid) from t)")
        assert await migrate(fresh_dsn, sql_dir=tmp_path) == [2]
        assert await conn.fetchval(valid) is True


async def _plan_uses(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    rows = await conn.fetch(f"explain (costs off) {sql}", *args)
    return "\n".join(r[0] for r in rows)


async def test_corrected_partial_index_counts_missing_key_as_not_dismissed(
    seeded_dsn: str,
) -> None:
    async with connect(seeded_dsn) as conn:
        missing = await conn.fetchval(
            "select count(*) from images "
            "where metadata is null or not metadata ? 'workspace_dismissed'"
        )
        fixed = await conn.fetchval(f"select count(*) from images where {FIXED_PREDICATE}")
        plan = await conn.fetchval(f"select count(*) from images where {PLAN_PREDICATE}")
        dismissed = await conn.fetchval(
            "select count(*) from images where metadata->>'workspace_dismissed' = 'true'"
        )
        total = await conn.fetchval("select count(*) from images")
    assert missing > 0
    assert fixed == total - dismissed
    assert plan <= fixed - missing, "the plan's predicate leaves out rows without the key"


async def test_planner_uses_corrected_partial_index_not_the_plans(seeded_dsn: str) -> None:
    page = (
        "select id from images where user_id = $1 and {pred} "
        "order by created_at desc, id desc limit 50"
    )
    async with connect(seeded_dsn) as conn:
        user = await conn.fetchval(
            "select user_id from images group by 1 order by count(*) desc limit 1"
        )
        await conn.execute(
            "create index idx_plan_original on images (user_id, created_at desc) "
            f"where {PLAN_PREDICATE}"
        )
        await conn.execute("analyze images")
        await conn.execute("set enable_seqscan = off")
        await conn.execute("set enable_bitmapscan = off")
        fixed_plan = await _plan_uses(conn, page.format(pred=FIXED_PREDICATE), user)
        await conn.execute("drop index idx_images_workspace_active")
        without = await _plan_uses(conn, page.format(pred=FIXED_PREDICATE), user)
    assert "idx_images_workspace_active" in fixed_plan
    assert "idx_plan_original" not in without, "the plan's predicate cannot answer this query"
