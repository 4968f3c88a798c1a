"""Typed keys for application and request state, and shared type aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from aiohttp import web

from reference.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
USER_ID = web.RequestKey("user_id", UUID)
