"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from reference.web.errors import json_response
from reference.web.feature import Feature
from reference.web.metrics import CONTENT_TYPE, METRICS
from reference.web.openapi import ApiRoutes
from reference.web.typedefs import POOL

routes = ApiRoutes(tag="system")
OPENAPI = web.AppKey("openapi", dict[str, Any])


@routes.operation(
    "GET",
    "/healthz",
    summary="Liveness and database reachability",
    public=True,
    responses={200: "healthy", 503: "database unreachable"},
)
async def healthz(request: web.Request) -> web.Response:
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
            await conn.fetchval("select 1")
    except Exception as exc:  # any failure to reach the database is "unhealthy"
        return json_response({"status": "unhealthy", "database": str(exc)}, status=503)
    return json_response({"status": "ok", "worker": os.getpid()})


@routes.operation(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    public=True,
    responses={200: "Prometheus text exposition"},
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
    responses={200: "OpenAPI 3 document"},
)
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


FEATURE = Feature("system", routes)
