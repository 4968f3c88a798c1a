"""The asyncpg pool, opened and closed in the application's cleanup context."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from reference.settings import Settings
from reference.web.typedefs import GENERIC_POOL, POOL, SETTINGS

#: ``force_custom_plan``: users differ by orders of magnitude in size, and after five
#: executions PostgreSQL would switch a prepared statement to a generic plan sized for the
#: average user, scanning all rows of the heavy one. A text search planned once chose the
#: trigram index on a clean database and the user's rows as soon as dismisses had filled the
#: index's pending list (tests/test_search_plans.py).
SERVER_SETTINGS: Final = {
    "plan_cache_mode": "force_custom_plan",
    "jit": "off",
    "application_name": "workspace-bench",
}
#: For statements whose best plan is the same for every user (a keyset page read from the
#: ``(user_id, created_at, id)`` index): planned once per connection, where a custom plan
#: costs about as much planning as executing. The plan is checked at every scale (tests).
GENERIC_PLAN_SETTINGS: Final = {**SERVER_SETTINGS, "plan_cache_mode": "force_generic_plan"}
#: The client gives a statement this much longer than the server does: a server that is alive
#: cancels it itself (the connection stays usable); one that is frozen cannot.
CLIENT_MARGIN_S: Final = 1.0


@dataclass(frozen=True)
class Limits:
    """Bounds on every wait a pool's user can meet; None leaves the server's default."""

    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None
    acquire_timeout_ms: int | None = None
    #: The session's settings these bounds are added to.
    base: Mapping[str, str] = field(default_factory=lambda: SERVER_SETTINGS)

    @classmethod
    def from_settings(cls, settings: Settings, base: Mapping[str, str] = SERVER_SETTINGS) -> Limits:
        return cls(
            settings.db_statement_timeout_ms,
            settings.db_lock_timeout_ms,
            settings.db_acquire_timeout_ms,
            base,
        )

    def server_settings(self) -> dict[str, str]:
        bounds = {
            "statement_timeout": self.statement_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
        }
        return {**self.base, **{k: str(v) for k, v in bounds.items() if v is not None}}

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"server_settings": self.server_settings()}
        if self.statement_timeout_ms is not None:
            options["command_timeout"] = self.statement_timeout_ms / 1000 + CLIENT_MARGIN_S
        if self.acquire_timeout_ms is not None:
            options["timeout"] = self.acquire_timeout_ms / 1000
        return options


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]  # asyncpg ships no type information
    """A pool whose ``acquire()`` is bounded unless told otherwise.

    asyncpg applies the acquire timeout to the release as well, so a connection whose query
    was abandoned on a frozen server is terminated instead of being waited for forever.
    """

    acquire_timeout_s: float | None = None

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


class ServiceConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection that knows whether it holds session state (a session advisory lock):
    only then does its release pay the full reset, a round trip to the server."""

    __slots__ = ("_session_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_state = False

    def mark_session_state(self) -> None:
        self._session_state = True

    def take_session_state(self) -> bool:
        held, self._session_state = self._session_state, False
        return held


def holds_session_state(conn: Any) -> None:
    """Say that ``conn`` is about to take session state (before the statement that takes it, so
    a cancelled statement is covered too); a connection from outside our pools needs nothing."""
    mark = getattr(conn, "mark_session_state", None)
    if mark is not None:
        mark()


async def reset_if_held(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg has already rolled back an open transaction; the
    rest of its reset (``pg_advisory_unlock_all()``, ``CLOSE ALL``, ``UNLISTEN *``, ``RESET
    ALL``) runs only for a connection marked by :func:`holds_session_state`: every other
    statement of the service is a transaction's or a plain query's, and leaves nothing behind."""
    if not isinstance(conn, ServiceConnection) or conn.take_session_state():
        query = conn.get_reset_query()
        if query:
            await conn.execute(query)


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


async def _init_bounded(conn: asyncpg.Connection) -> None:
    await init_connection(conn)
    link = weakref.ref(conn)

    def drop_on_client_timeout(query: Any) -> None:
        # The server did not cancel in time, so it is frozen or gone: waiting for this
        # connection again (a rollback, the pool's reset) would only wait for as long again.
        held = link()
        if isinstance(query.exception, TimeoutError) and held is not None:
            held.terminate()

    conn.add_query_logger(drop_on_client_timeout)


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, limits: Limits | None = None
) -> asyncpg.Pool:
    limits = limits or Limits()
    pool = BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=init_connection if limits.statement_timeout_ms is None else _init_bounded,
        loop=None,
        reset=reset_if_held,
        connection_class=ServiceConnection,
        record_class=asyncpg.Record,
        **limits.connect_options(),
    )
    if limits.acquire_timeout_ms is not None:
        pool.acquire_timeout_s = limits.acquire_timeout_ms / 1000
    await pool
    return pool


async def pool_context(app: web.Application) -> AsyncIterator[None]:
    """The service's pools: :data:`POOL` plans every statement for its arguments;
    :data:`GENERIC_POOL` (at most half as many connections) reuses one plan per statement."""
    settings = app[SETTINGS]
    pool = await create_pool(
        settings.database_url,
        settings.pool_min_size,
        settings.pool_max_size,
        Limits.from_settings(settings),
    )
    try:
        generic = await create_pool(
            settings.database_url,
            1,
            max(1, settings.pool_max_size // 2),
            Limits.from_settings(settings, GENERIC_PLAN_SETTINGS),
        )
    except BaseException:
        await pool.close()
        raise
    app[POOL] = pool
    app[GENERIC_POOL] = generic
    try:
        yield
    finally:
        await asyncio.gather(pool.close(), generic.close())
