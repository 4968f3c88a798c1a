"""Typed keys for application and request state, and shared type aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.settings import Settings
from reference.urls.object_store import ObjectStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
#: Connections that plan each statement once (``plan_cache_mode = force_generic_plan``): only
#: for statements whose plan is the same for every user (see reference.db.pool).
GENERIC_POOL = web.AppKey("generic_pool", asyncpg.Pool)
#: Opened by the storage feature; the batch feature (purge, download) uses it too.
STORE = web.AppKey("object_store", ObjectStore)
USER_ID = web.RequestKey("user_id", UUID)
