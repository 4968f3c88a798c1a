"""The service's pool: a released connection pays the full reset only when it took session
state, and a session advisory lock never outlives the connection's turn."""

from __future__ import annotations

import asyncio
from typing import Any

from fixtures.database import DatabaseInfo
from reference.db.pool import (
    GENERIC_PLAN_SETTINGS,
    Limits,
    ServiceConnection,
    create_pool,
    holds_session_state,
)

LOCK = 4_242_424


async def _locks_held(pool: Any) -> int:
    return int(
        await pool.fetchval(
            "select count(*) from pg_locks where locktype = 'advisory' and objid = $1", LOCK
        )
    )


async def _check(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        # A plain query's connection goes back as it was: no reset ran, so a session setting
        # that nothing in the service makes would survive (proof that no round trip was paid).
        async with pool.acquire() as conn:
            assert isinstance(conn._con, ServiceConnection)
            await conn.execute("set application_name = 'left-as-is'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("show application_name") == "left-as-is"

        # A connection marked before it takes a session lock is reset on release: the lock and
        # the setting are gone before anyone else gets the connection.
        async with pool.acquire() as conn:
            holds_session_state(conn)
            await conn.execute("select pg_advisory_lock($1)", LOCK)
        async with pool.acquire() as conn:
            assert await conn.fetchval("show application_name") == "workspace-bench"
        assert await _locks_held(pool) == 0

        # An open transaction is always rolled back (asyncpg's own part of the reset).
        async with pool.acquire() as conn:
            await conn.execute("begin; create temporary table never_kept (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("select to_regclass('never_kept')") is None
    finally:
        await pool.close()


def test_release_resets_only_a_connection_that_took_session_state(database: DatabaseInfo):
    asyncio.run(_check(database.dsn))


async def _plans_made(dsn: str, limits: Limits | None) -> tuple[int, int]:
    """How many of 8 runs of one statement used the generic plan and how many a custom one
    (PostgreSQL's own count for the connection's prepared statement)."""
    pool = await create_pool(dsn, min_size=1, max_size=1, limits=limits)
    sql = "select count(*) from pg_class where relname = $1 and relpages >= $2"
    try:
        async with pool.acquire() as conn:
            for _ in range(8):
                await conn.fetchval(sql, "pg_class", 0)
            row = await conn.fetchrow(
                "select generic_plans, custom_plans from pg_prepared_statements "
                "where statement = $1",
                sql,
            )
            return row["generic_plans"], row["custom_plans"]
    finally:
        await pool.close()


def test_generic_pool_reuses_a_plan_and_the_main_pool_plans_every_run(
    database: DatabaseInfo,
) -> None:
    generic, custom = asyncio.run(_plans_made(database.dsn, Limits(base=GENERIC_PLAN_SETTINGS)))
    assert (generic, custom) == (8, 0)
    generic, custom = asyncio.run(_plans_made(database.dsn, Limits()))
    assert (generic, custom) == (0, 8)
