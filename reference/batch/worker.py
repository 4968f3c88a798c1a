"""``python -m reference.batch``: finish batch operations left running, then exit.

The service does this at start; this entry point does it without serving (after a crash, from
a cron job, or in tests that kill it between chunks). It prints one line per committed chunk.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from uuid import UUID

from reference.batch.operations import PurgePolicy, resume_all, run_operation
from reference.db.pool import Limits, create_pool
from reference.settings import Settings
from reference.urls.object_store import ObjectStore


async def _print_chunk(op_id: UUID, number: int) -> None:
    print(f"chunk {number} of {op_id} committed", flush=True)


async def _main(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    purge = PurgePolicy(
        ObjectStore(args.storage_dir or settings.storage_dir),
        settings.purge_retry_base_s,
        settings.purge_retry_max_s,
    )
    chunk_size = args.chunk_size or settings.batch_chunk_size
    pool = await create_pool(
        args.dsn or settings.database_url, 1, 2, Limits.from_settings(settings)
    )
    try:
        if args.operation is not None:
            await run_operation(pool, args.operation, chunk_size, purge, _print_chunk)
            resumed = 1
        else:
            resumed = await resume_all(pool, chunk_size, purge, _print_chunk)
    finally:
        await pool.close()
    print(f"done: {resumed} operations", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="database (default: DATABASE_URL)")
    parser.add_argument("--operation", type=UUID, help="only this operation")
    parser.add_argument("--chunk-size", type=int, help="assets per transaction")
    parser.add_argument("--storage-dir", type=Path, help="default: STORAGE_DIR")
    return asyncio.run(_main(parser.parse_args(argv)))
