"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiohttp import web

from reference.web.errors import RETRY_AFTER_S, dependency_failure, json_response
from reference.web.feature import Feature
from reference.web.metrics import CONTENT_TYPE, METRICS
from reference.web.openapi import ApiRoutes
from reference.web.schemas import INTEGER, STRING, obj
from reference.web.typedefs import POOL, SETTINGS

log = logging.getLogger(__name__)
routes = ApiRoutes(tag="system")
OPENAPI = web.AppKey("openapi", dict[str, Any])


@routes.operation(
    "GET",
    "/healthz",
    summary="Liveness and database reachability, answered within HEALTHZ_TIMEOUT_MS",
    public=True,
    responses={
        200: ("healthy", obj({"status": STRING, "database": STRING, "worker": INTEGER})),
        503: (
            "a dependency is unreachable or too slow: which one, never its address",
            obj({"status": STRING, "database": STRING}),
        ),
    },
)
async def healthz(request: web.Request) -> web.Response:
    budget_s = request.app[SETTINGS].healthz_timeout_ms / 1000
    try:
        async with asyncio.timeout(budget_s):
            async with request.app[POOL].acquire(timeout=budget_s) as conn:
                await conn.fetchval("select 1", timeout=budget_s)
    except Exception as exc:
        state = (dependency_failure(exc) or "database_error").removeprefix("database_")
        log.warning("healthz: database %s (%s)", state, type(exc).__name__)
        return json_response(
            {"status": "unhealthy", "database": state},
            status=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return json_response({"status": "ok", "database": "ok", "worker": os.getpid()})


@routes.operation(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    public=True,
    responses={200: ("Prometheus text exposition", STRING, "text/plain")},
)
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    pool = request.app[POOL]
    registry.pool_size.set(pool.get_size())
    registry.pool_idle.set(pool.get_idle_size())
    registry.pool_max.set(pool.get_max_size())
    response = web.Response(body=registry.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


@routes.operation(
    "GET",
    "/openapi.json",
    summary="This document",
    public=True,
    responses={200: ("OpenAPI 3 document", obj({"openapi": STRING, "paths": {"type": "object"}}))},
)
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


FEATURE = Feature("system", routes)
