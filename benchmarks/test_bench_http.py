"""The floor under every HTTP benchmark: one request to the service's health check.

The health check does one ``select 1`` on the pool, so this is the cost of an HTTP round trip
(client, server, middlewares, JSON) plus the cheapest database round trip, on this machine, in
the session's event loop. Endpoint benchmarks read against it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from benchmarks.harness import BenchDataset, BenchLoop, record, serve_app
from reference.app import create_app
from reference.settings import Settings


@pytest.mark.benchmark(group="http")
def test_healthz(benchmark: Any, bench_loop: BenchLoop, bench_dataset: BenchDataset) -> None:
    settings = dataclasses.replace(Settings(), database_url=bench_dataset.dsn)
    with bench_loop.enter(serve_app(create_app(settings))) as server:
        url = server.url("/healthz")

        async def get() -> int:
            async with server.session.get(url) as response:
                await response.read()
                return response.status

        assert bench_loop.run(get()) == 200
        record(benchmark, bench_dataset)
        assert benchmark(bench_loop.timed(get)) == 200
