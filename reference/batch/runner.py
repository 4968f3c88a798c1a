"""Background batch work: the runner that drives large operations in chunks; the trash purge.

Resuming interrupted operations and the periodic purge run in one process across all workers:
the one holding the ``batch-background`` lease (:mod:`reference.db.lease`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.batch.operations import (
    Operation,
    PurgePolicy,
    purge_expired,
    run_operation,
    running_operations,
)
from reference.db.lease import lease_context
from reference.settings import Settings
from reference.web.typedefs import POOL, SETTINGS

log = logging.getLogger(__name__)


class BatchRunner:
    """Runs operations to completion: small ones in the request, large ones as tasks."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.purge = PurgePolicy(
            settings.storage_dir, settings.purge_retry_base_s, settings.purge_retry_max_s
        )
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    async def drive(self, op: Operation) -> None:
        if not op.running:
            return
        if op.total <= self.settings.batch_inline_max:
            await run_operation(self.pool, op.id, self.settings.batch_chunk_size, self.purge)
        else:
            self.start(op.id)

    def start(self, op_id: UUID) -> None:
        task = self._tasks.get(op_id)
        if task is not None and not task.done():
            return
        self._tasks[op_id] = asyncio.create_task(self._run(op_id), name=f"batch-{op_id}")

    async def _run(self, op_id: UUID) -> None:
        try:
            await run_operation(self.pool, op_id, self.settings.batch_chunk_size, self.purge)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The operation stays 'running' with every chunk all-or-nothing; the next start
            # or a POST .../resume picks it up.
            log.exception("batch operation %s stopped; it can be resumed", op_id)
        finally:
            self._tasks.pop(op_id, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


BATCH_RUNNER: Final = web.AppKey("batch_runner", BatchRunner)


async def runner_context(app: web.Application) -> AsyncIterator[None]:
    runner = BatchRunner(app[POOL], app[SETTINGS])
    app[BATCH_RUNNER] = runner
    try:
        yield
    finally:
        await runner.close()


async def resume_interrupted(runner: BatchRunner) -> None:
    try:
        async with runner.pool.acquire() as conn:
            interrupted = await running_operations(conn)
    except asyncpg.UndefinedTableError:
        log.warning("batch: migration 0005 not applied; batch routes will fail")
        interrupted = []
    for op_id in interrupted:
        runner.start(op_id)
    if interrupted:
        log.info("batch: resuming %d interrupted operations", len(interrupted))


async def _trash_worker(pool: asyncpg.Pool, settings: Settings) -> None:
    purge = PurgePolicy(
        settings.storage_dir, settings.purge_retry_base_s, settings.purge_retry_max_s
    )
    while True:
        try:
            purged = await purge_expired(pool, settings.trash_retention_s, purge)
            if purged:
                log.info("trash: purged %d assets past retention", purged)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("trash: purge pass failed; next pass in %ss", settings.purge_interval_s)
        await asyncio.sleep(settings.purge_interval_s)


async def _background(app: web.Application) -> None:
    await resume_interrupted(app[BATCH_RUNNER])
    await _trash_worker(app[POOL], app[SETTINGS])


trash_context: Final = lease_context("batch-background", _background)
