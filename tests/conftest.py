"""Shared test fixtures: the service under test on a real database, over real HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient

from reference.app import create_app
from reference.settings import Settings
from reference.web.auth import issue_token

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


#: This session's secrets (random: no secret is written in the source), shared by every test.
SETTINGS: Final = Settings()


def test_settings(dsn: str, **overrides: Any) -> Settings:
    return dataclasses.replace(SETTINGS, database_url=dsn, **overrides)


def auth_headers(user_id: UUID, settings: Settings | None = None) -> dict[str, str]:
    secret = (settings or SETTINGS).jwt_secret
    return {"Authorization": f"Bearer {issue_token(secret, user_id)}"}


@pytest.fixture
def make_client(aiohttp_client: Any) -> ClientFactory:
    """``await make_client(dsn, **settings_overrides)``: the app on a real test server."""

    async def factory(dsn: str, **overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(
            create_app(test_settings(dsn, **overrides))
        )
        return client

    return factory
