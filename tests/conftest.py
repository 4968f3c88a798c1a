"""Shared test fixtures: the service under test on a real database, over real HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import pytest
import redis
from aiohttp.test_utils import TestClient

from fixtures.database import create_database, drop_database, run_async
from fixtures.prepare import prepare_dataset
from fixtures.spec import spec_for
from reference.app import create_app
from reference.db.pool import connect
from reference.db.redis_keys import unlink_prefix
from reference.settings import Settings
from reference.urls.blob_pool import pool_blob_for, pool_blobs
from reference.urls.object_store import ObjectStore
from reference.web.auth import issue_token

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


#: This session's secrets (random: no secret is written in the source), shared by every test.
SETTINGS: Final = Settings()


def test_settings(dsn: str, **overrides: Any) -> Settings:
    return dataclasses.replace(SETTINGS, database_url=dsn, **overrides)


def auth_headers(user_id: UUID, settings: Settings | None = None) -> dict[str, str]:
    secret = (settings or SETTINGS).jwt_secret
    return {"Authorization": f"Bearer {issue_token(secret, user_id)}"}


def pool_content(name: str) -> bytes:
    """The bytes the fixture writer gives an object of this name."""
    return pool_blobs()[pool_blob_for(name)[0]]


async def put_objects(dsn: str, storage_dir: Path, objects: Iterable[tuple[str, str]]) -> None:
    """Put each (bucket, name) through the store with its :func:`pool_content` (the same
    bytes each time: a shared database may already hold them)."""
    store = await ObjectStore.open(storage_dir)
    async with connect(dsn) as conn:
        for bucket, name in objects:
            await store.put(conn, bucket, name, pool_content(name))


@contextlib.contextmanager
def prepared_database(
    admin_dsn: str,
    scale: str,
    prefix: str,
    *,
    storage_dir: Path | None = None,
    analyze: bool = False,
) -> Iterator[str]:
    """A database of its own holding the ``scale`` dataset loaded as ``make bench`` loads it
    (``analyze``: vacuumed and analysed too), dropped afterwards."""

    async def prepare() -> str:
        dsn = await create_database(admin_dsn, prefix=prefix)
        await prepare_dataset(dsn, spec_for(scale), progress=False, storage_dir=storage_dir)
        if analyze:
            async with connect(dsn) as conn:
                await conn.execute("vacuum analyze")
        return dsn

    dsn = run_async(prepare())
    try:
        yield dsn
    finally:
        run_async(drop_database(admin_dsn, dsn))


@pytest.fixture
def make_client(aiohttp_client: Any) -> ClientFactory:
    """``await make_client(dsn, **settings_overrides)``: the app on a real test server."""

    async def factory(dsn: str, **overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(
            create_app(test_settings(dsn, **overrides))
        )
        return client

    return factory


LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``REDIS_URL``, else a Redis answering on 127.0.0.1:6379; else the test is skipped."""
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {url} ({exc}): set REDIS_URL to run the shared-cache tests")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"wsbtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    unlink_prefix(redis_url, prefix)
