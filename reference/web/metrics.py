"""Prometheus metrics, one registry per application (several apps can share a process).

Under several workers (``PROMETHEUS_MULTIPROC_DIR`` set before any of them starts) every process
writes its values to files there and a scrape, whichever worker answers it, sums all of them:
prometheus-client's multiprocess mode. Gauges then add up over the live workers.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from reference.web.errors import CLIENT_CLOSED, client_gone
from reference.web.typedefs import Handler

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Fine buckets below 100 ms: most of this service's answers land there.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    multiprocess_dir: str = field(default_factory=lambda: os.environ.get(MULTIPROC_ENV, ""))

    def __post_init__(self) -> None:
        r = self.registry
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Request latency by route; status 499: the client closed the connection first",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.url_cache_hits = Counter(
            "url_cache_hits", "Signed-URL cache hits, any level", ["mode"], registry=r
        )
        self.url_cache_misses = Counter(
            "url_cache_misses", "Signed-URL cache misses (signed)", ["mode"], registry=r
        )
        self.url_cache_level_hits = Counter(
            "url_cache_level_hits", "Hits per cache level", ["mode", "level"], registry=r
        )
        self.url_cache_level_misses = Counter(
            "url_cache_level_misses", "Misses per cache level", ["mode", "level"], registry=r
        )
        self.url_cache_errors = Counter(
            "url_cache_errors", "Shared-cache calls that failed", ["mode", "level"], registry=r
        )
        self.url_cache_evictions = Counter(
            "url_cache_evictions", "Signed-URL cache evictions (size bound)", ["mode"], registry=r
        )
        self.url_cache_size = Gauge(
            "url_cache_entries",
            "Signed-URL cache entries",
            ["mode"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.urls_signed = Counter("urls_signed", "URLs signed", ["mode", "bucket"], registry=r)
        self.sign_calls = Counter(
            "sign_calls", "Signing calls (a batch counts once)", ["mode", "kind"], registry=r
        )
        self.search_parallel_scans = Counter(
            "search_parallel_scans",
            "Prompt scans that outran SEARCH_SERIAL_SCAN_MS and ran again on parallel workers",
            ["mode"],
            registry=r,
        )
        # Each worker sets its own pool's figures when it answers a scrape: summed over workers.
        self.pool_size = Gauge(
            "db_pool_size", "Connections open in the pool", registry=r, multiprocess_mode="livesum"
        )
        self.pool_idle = Gauge(
            "db_pool_idle", "Idle connections in the pool", registry=r, multiprocess_mode="livesum"
        )
        self.pool_max = Gauge(
            "db_pool_max_size", "Pool maximum size", registry=r, multiprocess_mode="livesum"
        )

    def exposition(self) -> bytes:
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


METRICS = web.AppKey("metrics", Metrics)


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


MetricT = TypeVar("MetricT", bound=MetricWrapperBase)


class Children(Generic[MetricT]):
    """A labelled metric's children, each found once: prometheus_client's ``labels()`` takes a
    lock and checks the labels on every call, several times a request. The registry keeps every
    child it made anyway, so this holds no more than it does."""

    def __init__(self, metric: MetricT) -> None:
        self._metric = metric
        self._found: dict[tuple[str, ...], MetricT] = {}

    def __call__(self, *labels: str) -> MetricT:
        child = self._found.get(labels)
        if child is None:
            child = self._found[labels] = self._metric.labels(*labels)
        return child


def make_metrics_middleware(metrics: Metrics) -> Middleware:
    request_seconds = Children(metrics.request_seconds)

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            if client_gone(request):
                status = CLIENT_CLOSED
            raise
        finally:
            request_seconds(request.method, route_label(request), str(status)).observe(
                time.perf_counter() - start
            )

    return metrics_middleware


CONTENT_TYPE = CONTENT_TYPE_LATEST
