"""The plan's URL claim: the first workspace page (50 assets with thumbnail URLs) for the
10,000-asset user, unified vs legacy URL mode, measured the same way in one run.

Both services run in this process on real HTTP against the same database and storage; the
client is an aiohttp session on loopback. ``cold`` clears the URL cache before each request
(a first visit: the plan's ``Map`` lived in a browser tab and started empty on every visit);
``warm`` keeps it (a repeat visit within the URL's life).

    .venv/bin/pytest benchmarks/test_bench_urls.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import dataclasses
import socket

import aiohttp
import pytest
from aiohttp import web

from benchmarks.harness import BenchDataset, BenchLoop, record
from reference.app import create_app
from reference.auth import issue_token
from reference.settings import Settings, UrlMode
from reference.urls import URLS

PAGE = 50
#: legacy is the plan's "before", unified its "after" (claim ``url_generation.page_<cache>``)
SIDE = {UrlMode.LEGACY: "before", UrlMode.UNIFIED: "after"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One service in one URL mode, on a free port, and a client session for it."""

    def __init__(self, loop, dsn, storage_dir, mode):
        self.loop = loop
        self.port = free_port()
        self.settings = dataclasses.replace(
            Settings(),
            database_url=dsn,
            storage_dir=storage_dir,
            public_url=f"http://127.0.0.1:{self.port}",
            url_mode=mode,
        )
        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, access_log=None)
        loop.run_until_complete(self._start())

    async def _start(self):
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.session = aiohttp.ClientSession()

    async def first_page(self, token, cold):
        if cold:
            self.app[URLS].clear_cache()
        url = f"http://127.0.0.1:{self.port}/v1/workspace?limit={PAGE}"
        async with self.session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            body = await r.json()
        assert r.status == 200
        assets = body["assets"]
        assert len(assets) == PAGE
        assert all(a["thumbnail_url"] for a in assets)
        return body

    def close(self):
        self.loop.run_until_complete(self.session.close())
        self.loop.run_until_complete(self.runner.cleanup())


@pytest.fixture(scope="module")
def loop(bench_loop: BenchLoop):
    return bench_loop.loop


@pytest.fixture(scope="module")
def services(loop, bench_dataset: BenchDataset):
    made = {
        mode: Service(loop, bench_dataset.dsn, bench_dataset.storage_dir, mode) for mode in UrlMode
    }
    yield made
    for service in made.values():
        service.close()


@pytest.mark.parametrize("mode", [UrlMode.UNIFIED, UrlMode.LEGACY])
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_first_workspace_page(benchmark, loop, services, bench_dataset: BenchDataset, mode, cache):
    service = services[mode]
    token = issue_token(service.settings.jwt_secret, bench_dataset.heavy_user)
    loop.run_until_complete(service.first_page(token, cold=False))  # connections, plans
    benchmark.group = f"url_generation.page_{cache}"
    record(
        benchmark,
        bench_dataset,
        claim=f"url_generation.page_{cache}",
        side=SIDE[mode],
        page=PAGE,
        mode=mode.value,
        cache=cache,
    )
    benchmark(lambda: loop.run_until_complete(service.first_page(token, cold=cache == "cold")))
