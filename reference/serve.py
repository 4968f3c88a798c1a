"""``make serve``: database, schema, data and storage objects, then the service in the foreground.

The database comes from the provider chain (``DATABASE_URL`` first); an empty one is migrated
and loaded with the ``SCALE`` dataset (default ``plan``), and every asset's files are written
under ``STORAGE_DIR``. Prints bearer tokens for a sample user and the heavy user. Ctrl-C stops
the service and the database the chain started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from typing import Final
from uuid import UUID

import asyncpg
from aiohttp import web

from fixtures.database import provide_database
from fixtures.generate import DatasetSpec, heavy_user_id, spec_for, user_ids
from fixtures.prepare import prepare_dataset, say
from fixtures.storage_files import write_storage_objects
from reference.app import create_app
from reference.auth import issue_token
from reference.migrate import migrate
from reference.settings import Settings

HAS_IMAGES_TABLE: Final = "select to_regclass('images') is not null"
HAS_ASSETS: Final = "select exists (select 1 from images)"
USER_EXISTS: Final = "select exists (select 1 from images where user_id = $1)"
LARGEST_USERS: Final = """
select user_id from images group by user_id order by count(*) desc limit 2
"""
TOKEN_TTL_S: Final = 7 * 86_400


async def prepare(settings: Settings, spec: DatasetSpec) -> tuple[UUID, UUID]:
    """Load when empty, migrate, write storage objects; return (sample user, heavy user)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        loaded = await conn.fetchval(HAS_IMAGES_TABLE) and await conn.fetchval(HAS_ASSETS)
    finally:
        await conn.close()
    if loaded:
        say("database already holds assets: not loading; applying pending migrations")
        await migrate(settings.database_url)
        conn = await asyncpg.connect(settings.database_url)
        try:
            say((await write_storage_objects(conn, settings.storage_dir, progress=True)).summary())
        finally:
            await conn.close()
    else:
        say(f"empty database: loading the {spec.name!r} dataset")
        await prepare_dataset(settings.database_url, spec, storage_dir=settings.storage_dir)
    conn = await asyncpg.connect(settings.database_url)
    try:
        heavy, sample = heavy_user_id(spec), user_ids(spec)[1]
        if not await conn.fetchval(USER_EXISTS, heavy):
            heavy, sample = [r["user_id"] for r in await conn.fetch(LARGEST_USERS)]
    finally:
        await conn.close()
    return sample, heavy


def announce(settings: Settings, sample: UUID, heavy: UUID) -> None:
    base = f"http://{settings.host}:{settings.port}"
    heavy_token = issue_token(settings.jwt_secret, heavy, TOKEN_TTL_S)
    sample_token = issue_token(settings.jwt_secret, sample, TOKEN_TTL_S)
    if settings.jwt_secret_is_default:
        say("JWT_SECRET is not set: using the development default (tokens below use it)")
    say(f"sample user {sample}:\n  TOKEN={sample_token}")
    say(f"heavy user {heavy}:\n  HEAVY_TOKEN={heavy_token}")
    say(f'try:\n  curl -H "Authorization: Bearer $HEAVY_TOKEN" "{base}/v1/workspace?limit=50"')
    say(f"url mode {settings.url_mode.value}; OpenAPI at {base}/openapi.json; Ctrl-C to stop")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = spec_for(os.environ.get("SCALE", "plan"))
    with provide_database() as info:
        say(info.describe())
        settings = dataclasses.replace(Settings.from_env(), database_url=info.dsn)
        sample, heavy = asyncio.run(prepare(settings, spec))
        announce(settings, sample, heavy)
        web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
