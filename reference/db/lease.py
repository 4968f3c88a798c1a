"""A process-level lease in PostgreSQL: which one of the service's workers runs a periodic job.

The lease is a session-level advisory lock held on a connection of its own (a pool would release
it when it resets a connection). PostgreSQL drops it the moment the holder's session ends, so a
worker that dies hands the job over within one retry interval; a heartbeat on the connection
notices a lost session, stops the job here and competes for the lease again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

import asyncpg
from aiohttp import web

from reference.web.feature import CleanupContext
from reference.web.typedefs import SETTINGS

log = logging.getLogger(__name__)

TRY_LOCK: Final = "select pg_try_advisory_lock(hashtextextended($1, 0))"
#: Waiting for the lease instead (tests hold it to keep a worker's job from running).
LOCK: Final = "select pg_advisory_lock(hashtextextended($1, 0))"
HEARTBEAT: Final = "select 1"
RETRY_S: Final = 2.0
HEARTBEAT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 10.0

Job = Callable[[], Coroutine[Any, Any, None]]


class Lease:
    def __init__(
        self, dsn: str, name: str, retry_s: float = RETRY_S, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.retry_s = retry_s
        self.heartbeat_s = heartbeat_s
        self.held = False

    async def run(self, job: Job) -> None:
        """Forever: wait for the lease, run ``job`` while it is held (cancelled if it is lost)."""
        while True:
            conn = await self._acquire()
            self.held = True
            log.info("lease %r held by pid %d: running its job here", self.name, os.getpid())
            task = asyncio.create_task(job(), name=f"lease-{self.name}")
            try:
                await self._keep(conn)
            finally:
                self.held = False
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await _close(conn)

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            try:
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=CONNECT_TIMEOUT_S,
                    server_settings={"application_name": f"workspace-bench lease {self.name}"},
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                self._unreachable(exc)
                await asyncio.sleep(self.retry_s)
                continue
            try:
                while True:
                    if await conn.fetchval(TRY_LOCK, self.name, timeout=CONNECT_TIMEOUT_S):
                        return conn
                    await asyncio.sleep(self.retry_s)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                conn.terminate()
                self._unreachable(exc)
                await asyncio.sleep(self.retry_s)
                continue
            except BaseException:
                conn.terminate()
                raise

    def _unreachable(self, exc: BaseException) -> None:
        log.warning("lease %r: cannot reach the database (%s); retrying", self.name, exc)

    async def _keep(self, conn: asyncpg.Connection) -> None:
        """Return when the session holding the lease is gone."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await conn.fetchval(HEARTBEAT, timeout=self.heartbeat_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("lease %r lost (%s): stopping its job here", self.name, exc)
                return


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        conn.terminate()


def lease_context(
    name: str, job: Callable[[web.Application], Coroutine[Any, Any, None]]
) -> CleanupContext:
    """A cleanup context in which this process competes for lease ``name`` and runs ``job``
    only while it holds it: one process across all the workers on one database."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        lease = Lease(app[SETTINGS].database_url, name)
        task = asyncio.create_task(lease.run(lambda: job(app)), name=f"lease-wait-{name}")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return context
