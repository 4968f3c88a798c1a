"""The asyncpg pool, opened and closed in the application's cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from reference.web.typedefs import POOL, SETTINGS

#: ``force_custom_plan``: users differ by orders of magnitude in size, and after five
#: executions PostgreSQL would switch a prepared statement to a generic plan sized for the
#: average user, scanning all rows of the heavy one.
SERVER_SETTINGS: Final = {
    "plan_cache_mode": "force_custom_plan",
    "jit": "off",
    "application_name": "workspace-bench",
}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


@asynccontextmanager
async def connect(
    dsn: str,
    *,
    json_codecs: bool = False,
    server_settings: dict[str, str] | None = None,
    connect_timeout: float = 60.0,
) -> AsyncIterator[asyncpg.Connection]:
    """One connection outside any pool, always closed; ``json_codecs=True`` and
    ``server_settings=SERVER_SETTINGS`` set it up as the pool sets up its own."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout, server_settings=server_settings)
    try:
        if json_codecs:
            await init_connection(conn)
        yield conn
    finally:
        await conn.close()


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=SERVER_SETTINGS,
        init=init_connection,
    )
    assert pool is not None
    return pool


async def pool_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database_url, settings.pool_min_size, settings.pool_max_size)
    app[POOL] = pool
    try:
        yield
    finally:
        await pool.close()
