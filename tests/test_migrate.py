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
