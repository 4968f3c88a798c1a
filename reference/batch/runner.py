"""Background batch work: the runner that drives operations in chunks, heals them, and purges.

Small operations run within the request that asked for them, holding the user's turn; large
ones run as tasks. A task whose chunk fails (connection lost, timeout, the database restarting)
marks the operation 'retrying' with the error and tries again with doubling back-off. A sweeper
starts every unfinished operation at start-up, and later every one whose lease has lapsed, so an
operation whose worker died is picked up by the next worker, in this process or another.

The sweeper and the periodic trash purge run in one process across all the service's workers:
the one holding the ``batch-background`` lease (:mod:`reference.db.lease`). Every worker runs the
operations its own requests start.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.batch.operations import (
    Kind,
    Lease,
    Operation,
    PurgePolicy,
    Selection,
    create_operation,
    mark_retrying,
    orphaned_operations,
    purge_expired,
    run_operation,
    run_to_target,
    running_operations,
    start_redo,
    start_undo,
    still_running,
    unfinished_operation,
    users_turn,
)
from reference.db.lease import lease_context
from reference.settings import Settings
from reference.urls.object_store import ObjectStore
from reference.web.errors import Conflict, dependency_failure
from reference.web.typedefs import POOL, SETTINGS, STORE

log = logging.getLogger(__name__)

Start = Callable[[asyncpg.Connection], Awaitable[Operation]]


def describe_failure(exc: BaseException) -> str:
    """What an operation's status shows: the kind of failure, never a server's address."""
    return f"{dependency_failure(exc) or 'error'}: {type(exc).__name__}"


class BatchRunner:
    """Runs operations to completion: small ones in the request, large ones as tasks."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, store: ObjectStore) -> None:
        self.pool = pool
        self.settings = settings
        self.purge = PurgePolicy(store, settings.purge_retry_base_s, settings.purge_retry_max_s)
        self.lease = Lease.for_this_process(settings.batch_lease_s)
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    def inline(self, op: Operation) -> bool:
        return op.total <= self.settings.batch_inline_max

    # --- requests: each waits for the user's turn, or is told which operation holds it ----

    async def submit(
        self, user_id: UUID, kind: Kind, selection: Selection, idempotency_key: str | None
    ) -> Operation:
        async def start(conn: asyncpg.Connection) -> Operation:
            op, _ = await create_operation(
                conn,
                user_id,
                kind,
                selection,
                max_ids=self.settings.batch_max_ids,
                idempotency_key=idempotency_key,
                lease=self.lease,
            )
            return op

        return await self._in_turn(user_id, start)

    async def undo(self, user_id: UUID) -> Operation:
        return await self._in_turn(user_id, lambda conn: start_undo(conn, user_id, self.lease))

    async def redo(self, user_id: UUID) -> Operation:
        return await self._in_turn(user_id, lambda conn: start_redo(conn, user_id, self.lease))

    async def _in_turn(self, user_id: UUID, start: Start) -> Operation:
        """Start an operation in the user's turn; run it here when it is small.

        Behind a short operation the request waits (in arrival order, at most the lock
        timeout); behind a background one, whose end is seconds or minutes away, it is
        refused at once with 409 naming that operation.
        """
        async with self.pool.acquire() as conn:
            running = await unfinished_operation(conn, user_id)
            if running is not None and not self.inline(running):
                raise still_running(running)
            try:
                async with users_turn(conn, user_id):
                    op = await start(conn)
                    if op.running and self.inline(op):
                        await self._run_here(conn, op)
            except (asyncpg.LockNotAvailableError, asyncpg.UniqueViolationError):
                running = await unfinished_operation(conn, user_id)
                if running is None:
                    raise Conflict("another batch request of yours is in progress; retry") from None
                raise still_running(running) from None
        if op.running and not self.inline(op):
            self.start(op.id)
        return op

    async def _run_here(self, conn: asyncpg.Connection, op: Operation) -> None:
        try:
            await run_to_target(
                conn, op.id, self.settings.batch_chunk_size, self.purge, self.lease.seconds
            )
        except BaseException:
            self.start(op.id)  # a task finishes it, retrying; the request reports the failure
            raise

    async def drive(self, op: Operation) -> None:
        """Run an operation created outside :meth:`submit` (organize's apply)."""
        if not op.running:
            return
        if not self.inline(op):
            self.start(op.id)
            return
        async with self.pool.acquire() as conn:
            try:
                async with users_turn(conn, op.user_id):
                    await self._run_here(conn, op)
            except asyncpg.LockNotAvailableError:
                self.start(op.id)

    # --- tasks --------------------------------------------------------------------------------

    def start(self, op_id: UUID, force: bool = False) -> None:
        task = self._tasks.get(op_id)
        if task is not None and not task.done():
            return
        self._tasks[op_id] = asyncio.create_task(self._run(op_id, force), name=f"batch-{op_id}")

    def _backoff_s(self, attempt: int) -> float:
        base = self.settings.batch_retry_base_ms / 1000
        ceiling = self.settings.batch_retry_max_ms / 1000
        return float(min(base * 2.0 ** (attempt - 1), ceiling) * random.uniform(0.5, 1.0))

    async def _run(self, op_id: UUID, force: bool) -> None:
        attempt = 0
        try:
            while True:
                try:
                    await run_operation(
                        self.pool,
                        op_id,
                        self.settings.batch_chunk_size,
                        self.purge,
                        lease=self.lease,
                        force=force,
                    )
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    attempt += 1
                    delay = self._backoff_s(attempt)
                    error = describe_failure(exc)
                    if dependency_failure(exc) is None:
                        log.exception("batch operation %s failed; retry in %.1fs", op_id, delay)
                    else:
                        log.warning("batch operation %s: %s; retry in %.1fs", op_id, error, delay)
                    await self._mark_retrying(op_id, error)
                    await asyncio.sleep(delay)
        finally:
            self._tasks.pop(op_id, None)

    async def _mark_retrying(self, op_id: UUID, error: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                await mark_retrying(conn, op_id, self.lease, error)
        except Exception as exc:  # the database may still be away; the retry will tell
            log.debug("batch operation %s: status not updated (%s)", op_id, type(exc).__name__)

    async def sweep(self) -> None:
        """Start unfinished operations: all at the first pass (a dead predecessor's lease may
        not have lapsed yet; the user's turn keeps a live worker's safe), then the orphans."""
        first = True
        while True:
            try:
                async with self.pool.acquire() as conn:
                    ids = await (running_operations if first else orphaned_operations)(conn)
                for op_id in ids:
                    self.start(op_id, force=first)
                if first and ids:
                    log.info("batch: resuming %d unfinished operations", len(ids))
                first = False
            except asyncio.CancelledError:
                raise
            except asyncpg.UndefinedTableError:
                log.warning("batch: migration 0005 not applied; batch routes will fail")
                return
            except Exception as exc:
                log.warning("batch: sweep failed (%s)", describe_failure(exc))
            await asyncio.sleep(self.lease.seconds / 2)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


BATCH_RUNNER: Final = web.AppKey("batch_runner", BatchRunner)


async def runner_context(app: web.Application) -> AsyncIterator[None]:
    runner = BatchRunner(app[POOL], app[SETTINGS], app[STORE])
    app[BATCH_RUNNER] = runner
    try:
        yield
    finally:
        await runner.close()


async def _trash_worker(pool: asyncpg.Pool, settings: Settings, store: ObjectStore) -> None:
    purge = PurgePolicy(store, settings.purge_retry_base_s, settings.purge_retry_max_s)
    while True:
        try:
            purged = await purge_expired(pool, settings.trash_retention_s, purge)
            if purged:
                log.info("trash: purged %d assets past retention", purged)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if dependency_failure(exc) is None:
                log.exception("trash: purge pass failed; next in %ss", settings.purge_interval_s)
            else:
                log.warning("trash: purge pass failed (%s)", describe_failure(exc))
        await asyncio.sleep(settings.purge_interval_s)


async def _background(app: web.Application) -> None:
    sweeper = app[BATCH_RUNNER].sweep()
    await asyncio.gather(sweeper, _trash_worker(app[POOL], app[SETTINGS], app[STORE]))


#: The lease whose holder runs the sweeper and the trash worker.
BACKGROUND_LEASE: Final = "batch-background"
trash_context: Final = lease_context(BACKGROUND_LEASE, _background)
