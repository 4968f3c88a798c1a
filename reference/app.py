"""The application factory: no I/O here; resources open in cleanup contexts."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from reference import system, webapp
from reference.batch import views as batch
from reference.db.pool import pool_context
from reference.organize import views as organize
from reference.search import views as search
from reference.settings import Settings
from reference.urls import storage_api as storage
from reference.web.auth import make_auth_middleware
from reference.web.errors import error_middleware
from reference.web.feature import Feature
from reference.web.headers import HANDLER_ARGS, common_headers, size_limit_middleware
from reference.web.metrics import METRICS, Metrics, make_metrics_middleware
from reference.web.openapi import build_document, public_routes
from reference.web.typedefs import SETTINGS
from reference.workspace import views as workspace

VERSION: Final = "0.1.0"
#: Every feature of the service, in registration order. Add a module's FEATURE here.
FEATURES: Final[tuple[Feature, ...]] = (
    system.FEATURE,
    storage.FEATURE,
    workspace.FEATURE,
    search.FEATURE,
    organize.FEATURE,
    batch.FEATURE,
    webapp.FEATURE,
)


def create_app(settings: Settings, features: tuple[Feature, ...] = FEATURES) -> web.Application:
    tables = [feature.routes for feature in features]
    metrics = Metrics()
    app = web.Application(
        middlewares=[
            make_metrics_middleware(metrics),
            error_middleware,
            size_limit_middleware,
            make_auth_middleware(settings.jwt_secret, public_routes(tables)),
        ],
        client_max_size=8 * 1024 * 1024,
        handler_args=HANDLER_ARGS,
    )
    app.on_response_prepare.append(common_headers)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[system.OPENAPI] = build_document(tables, VERSION, settings)
    app.cleanup_ctx.append(pool_context)
    for feature in features:
        app.cleanup_ctx.extend(feature.contexts)
        app.add_routes(feature.routes)
    return app
