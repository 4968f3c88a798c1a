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
#: What 0009 built before 0014 moved the trigram indexes to the stored ``prompt_fold``.
FOLD_EXPRESSION_TRIGRAM = """
do $$
begin
    if exists (select 1 from pg_extension where extname = 'btree_gin') then
        create index idx_images_user_fold_trgm
            on images using gin (user_id, search_fold(prompt) gin_trgm_ops);
        create index idx_videos_user_fold_trgm
            on videos using gin (user_id, search_fold(prompt) gin_trgm_ops);
    end if;
end
$$;
"""
INDEX_DEFINITIONS = (
    "select indexname, indexdef from pg_indexes where schemaname = 'public' order by indexname"
)
COLUMN_DEFINITIONS = """
select table_name, column_name, data_type, generation_expression
from information_schema.columns where table_schema = 'public'
order by table_name, column_name
"""


async def _schema(dsn: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    async with connect(dsn) as conn:
        indexes = [tuple(r) for r in await conn.fetch(INDEX_DEFINITIONS)]
        columns = [tuple(r) for r in await conn.fetch(COLUMN_DEFINITIONS)]
    return indexes, columns


def _copy_migrations(to: Path, version: int = 4) -> Path:
    for path in SQL_DIR.glob("*.sql"):
        shutil.copy(path, to / path.name)
    return sorted(to.glob(f"{version:04d}_*.sql"))[0]


@pytest.mark.parametrize(
    ("version", "earlier_checksum"), [(4, "9f3591bfaae3f12d"), (9, "38f6188c4a38266b")]
)
def test_edited_files_list_the_texts_databases_applied_before(
    version: int, earlier_checksum: str
) -> None:
    (search,) = [m for m in discover() if m.version == version]
    assert search.superseded == {earlier_checksum}
    assert search.accepts(earlier_checksum)
    assert search.accepts(search.checksum)
    assert not search.accepts("0" * 16)


@pytest.mark.parametrize(
    ("version", "earlier_text", "earlier_target", "earlier_index"),
    [
        (4, RAW_PROMPT_TRIGRAM, 4, "idx_images_user_prompt_trgm"),
        (9, FOLD_EXPRESSION_TRIGRAM, 13, "idx_images_user_fold_trgm"),
    ],
    ids=["0004-raw-prompt-index", "0009-fold-expression-index"],
)
async def test_a_superseded_text_is_accepted_and_leaves_the_same_schema(
    fresh_dsn: str,
    tmp_path: Path,
    version: int,
    earlier_text: str,
    earlier_target: int,
    earlier_index: str,
) -> None:
    """A database that applied a file's earlier text (0004 when it still built the raw-prompt
    trigram index; 0009 when it built the index on the fold expression, which 0012 and 0013
    then tuned) migrates on, once the file lists that text's checksum, to the very indexes and
    columns a new database gets."""
    earlier_dir, later_dir = tmp_path / "earlier", tmp_path / "later"
    earlier_dir.mkdir()
    later_dir.mkdir()
    earlier = _copy_migrations(earlier_dir, version)
    earlier.write_text(earlier.read_text() + earlier_text)
    (old,) = [m for m in discover(earlier_dir) if m.version == version]
    later = _copy_migrations(later_dir, version)
    later.write_text(f"-- migrate: supersedes {old.checksum}\n" + later.read_text())
    applied_first = [v for v in ALL_VERSIONS if v <= earlier_target]
    assert await migrate(fresh_dsn, target=earlier_target, sql_dir=earlier_dir) == applied_first
    async with connect(fresh_dsn) as conn:
        assert await conn.fetchval("select to_regclass($1)", earlier_index)
    assert await migrate(fresh_dsn, sql_dir=later_dir) == ALL_VERSIONS[len(applied_first) :]
    async with connect(fresh_dsn) as conn:
        await conn.execute("create database wsb_test_fresh_schema")
    fresh = fresh_dsn.rsplit("/", 1)[0] + "/wsb_test_fresh_schema"
    try:
        await migrate(fresh)
        assert await _schema(fresh_dsn) == await _schema(fresh)
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
