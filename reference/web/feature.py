"""What a feature module hands to the app factory: its routes and its resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from reference.web.openapi import ApiRoutes

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class Feature:
    name: str
    routes: ApiRoutes
    #: Resources the feature needs (caches, workers), opened after the pool, closed before it.
    contexts: tuple[CleanupContext, ...] = ()
