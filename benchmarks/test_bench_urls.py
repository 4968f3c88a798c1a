"""The plan's URL claim (Task 1.1: URL generation at least 50% faster), legacy vs unified.

Both URL services run in this process, each inside a service of its mode serving on a real
loopback port (legacy signs by one HTTP round trip per object to that service's storage route),
against the same database and storage. Every pair is timed in the one session loop; data and
servers are built outside the timed part.

``url_generation.*`` (the claim) times ``app[URLS].thumbnail_urls(assets)`` itself, as a grid
asks for its thumbnails:

* ``page_*``: the 50 assets of the heavy user's first workspace page; ``batch1000_*``: 1,000 of
  the heavy user's assets (the newest; fewer when the dataset has fewer);
* ``cold``: the URL cache is cleared before each round, untimed (a first visit: the plan's
  ``Map`` lived in a browser tab and started empty); ``warm``: every URL is cached;
* ``window_boundary``: the page's URLs are signed and cached at an injected clock's time, the
  clock moves just past the window boundary at which every one of them has expired (the unified
  window's end, which is also past the legacy URLs' hour), and the timed call signs the page
  again: the unified service in one batch per bucket, legacy one round trip per object;
* ``page_cold_high_res``: the same as ``page_cold`` for the high-res objects (opening assets).

``workspace_page.*`` times the whole first workspace page over HTTP (query, URLs, JSON) in
each mode, cold and warm: the figure a user sees.

    .venv/bin/pytest benchmarks/test_bench_urls.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import dataclasses
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from benchmarks.harness import BenchDataset, BenchLoop, record, rounds_for
from reference.app import create_app
from reference.assets import Asset
from reference.settings import Settings, UrlMode
from reference.urls.legacy import EXPIRES_IN_S, LegacyUrlService
from reference.urls.service import URLS, UrlService, make_unified
from reference.web.auth import issue_token
from reference.web.metrics import METRICS, Metrics
from reference.web.typedefs import GENERIC_POOL
from reference.workspace.views import WorkspaceMode, WorkspaceQuery, fetch_page

PAGE = 50
BATCH = 1000
#: legacy is the plan's "before", unified its "after"
SIDE = {UrlMode.LEGACY: "before", UrlMode.UNIFIED: "after"}
MODES = [UrlMode.UNIFIED, UrlMode.LEGACY]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """One service in one URL mode, on a free port, and a client session for it."""

    def __init__(self, loop, dsn, storage_dir, mode):
        self.loop = loop
        self.mode = mode
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

    @property
    def urls(self) -> UrlService:
        return self.app[URLS]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    async def newest_assets(self, user_id, n):
        query = WorkspaceQuery(WorkspaceMode.ALL, n, None, False)
        rows = await fetch_page(self.app[GENERIC_POOL], user_id, query)
        return [Asset.from_record(r) for r in rows[:n]]

    async def first_page(self, token, cold):
        if cold:
            self.urls.clear_cache()
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


class Clock:
    """A clock the benchmark sets: the URL services' ``clock`` parameter."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include ``labels`` (0 when none yet)."""
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == f"{name}_total" and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def check_urls(urls, n):
    assert len(urls) == n
    assert all(urls), "every asset has a URL"


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


@pytest.fixture(scope="module")
def asset_sets(loop, services, bench_dataset: BenchDataset) -> dict[str, list[Asset]]:
    """The page and the batch, fetched once (the same rows for both modes)."""
    service = services[UrlMode.UNIFIED]
    page = loop.run_until_complete(service.newest_assets(bench_dataset.heavy_user, PAGE))
    batch = loop.run_until_complete(service.newest_assets(bench_dataset.heavy_user, BATCH))
    assert len(page) == PAGE
    assert len(batch) == min(BATCH, bench_dataset.spec.heavy_assets)
    return {"page": page, "batch1000": batch}


def bench_generation(benchmark, loop, service, assets, *, claim, dataset, cold, high_res=False):
    urls = service.urls
    generate = urls.high_res_urls if high_res else urls.thumbnail_urls

    def run():
        return loop.run_until_complete(generate(assets))

    def signs():
        return counter(service.metrics, "sign_calls", mode=service.mode.value)

    urls.clear_cache()
    before = signs()
    started = time.perf_counter()
    check_urls(run(), len(assets))  # connections, and one cold round to size the rounds
    cold_s = time.perf_counter() - started
    sign_calls = int(signs() - before)
    benchmark.group = claim
    record(
        benchmark,
        dataset,
        claim=claim,
        side=SIDE[service.mode],
        mode=service.mode.value,
        n_assets=len(assets),
        cache="cold" if cold else "warm",
        objects="high_res" if high_res else "thumbnail",
        sign_calls_per_round=sign_calls if cold else 0,
    )
    if cold:
        result = benchmark.pedantic(
            run, setup=urls.clear_cache, rounds=rounds_for(benchmark, cold_s), warmup_rounds=1
        )
    else:
        result = benchmark(run)
    check_urls(result, len(assets))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("size", ["page", "batch1000"])
def test_url_generation(
    benchmark, loop, services, asset_sets, bench_dataset: BenchDataset, size, cache, mode
):
    bench_generation(
        benchmark,
        loop,
        services[mode],
        asset_sets[size],
        claim=f"url_generation.{size}_{cache}",
        dataset=bench_dataset,
        cold=cache == "cold",
    )


@pytest.mark.parametrize("mode", MODES)
def test_url_generation_high_res(
    benchmark, loop, services, asset_sets, bench_dataset: BenchDataset, mode
):
    bench_generation(
        benchmark,
        loop,
        services[mode],
        asset_sets["page"],
        claim="url_generation.page_cold_high_res",
        dataset=bench_dataset,
        cold=True,
        high_res=True,
    )


@pytest.fixture
def clocked(loop, services, request):
    """A URL service of the mode with an injected clock, beside that mode's running service
    (legacy signs through its storage route); metrics go to that service's registry."""
    service = services[request.param]
    clock = Clock(time.time())
    urls: UrlService
    if request.param == UrlMode.LEGACY:
        urls = LegacyUrlService(service.settings, service.metrics, clock)
    else:
        urls = make_unified(service.settings, service.metrics, clock)
    yield service, urls, clock
    loop.run_until_complete(urls.close())


@pytest.mark.parametrize("clocked", MODES, indirect=True, ids=[m.value for m in MODES])
def test_url_generation_window_boundary(
    benchmark, loop, clocked, asset_sets, bench_dataset: BenchDataset
):
    service, urls, clock = clocked
    page = asset_sets["page"]
    window = service.settings.url_window_s
    # Signed one second before a boundary; regenerated just past the next one, where the
    # unified window's URLs (exp = window start + 2 windows) and legacy's (exp = signed + 1 h)
    # have both expired, so both sides re-sign the whole page.
    signed_at = (int(time.time()) // window + 1) * window - 1
    window_end = (int(signed_at) // window + 2) * window
    regenerated_at = max(window_end, signed_at + EXPIRES_IN_S) + 1

    def setup():
        urls.clear_cache()
        clock.set(signed_at)
        check_urls(loop.run_until_complete(urls.thumbnail_urls(page)), len(page))
        clock.set(regenerated_at)

    def run():
        return loop.run_until_complete(urls.thumbnail_urls(page))

    mode = service.mode.value
    setup()
    misses, signs = (
        counter(service.metrics, "url_cache_misses", mode=mode),
        counter(service.metrics, "sign_calls", mode=mode),
    )
    started = time.perf_counter()
    check_urls(run(), len(page))
    elapsed = time.perf_counter() - started
    assert counter(service.metrics, "url_cache_misses", mode=mode) - misses == len(page), (
        "every URL of the page is re-signed past the boundary"
    )
    sign_calls = int(counter(service.metrics, "sign_calls", mode=mode) - signs)

    claim = "url_generation.window_boundary"
    benchmark.group = claim
    record(
        benchmark,
        bench_dataset,
        claim=claim,
        side=SIDE[service.mode],
        mode=mode,
        n_assets=len(page),
        window_s=window,
        clock_advance_s=regenerated_at - signed_at,
        sign_calls_per_round=sign_calls,
    )
    result = benchmark.pedantic(
        run, setup=setup, rounds=rounds_for(benchmark, elapsed), warmup_rounds=1
    )
    check_urls(result, len(page))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_first_workspace_page(benchmark, loop, services, bench_dataset: BenchDataset, mode, cache):
    service = services[mode]
    token = issue_token(service.settings.jwt_secret, bench_dataset.heavy_user)
    loop.run_until_complete(service.first_page(token, cold=False))  # connections, plans
    benchmark.group = f"workspace_page.{cache}"
    record(
        benchmark,
        bench_dataset,
        claim=f"workspace_page.{cache}",
        side=SIDE[mode],
        page=PAGE,
        mode=mode.value,
        cache=cache,
    )
    benchmark(lambda: loop.run_until_complete(service.first_page(token, cold=cache == "cold")))
