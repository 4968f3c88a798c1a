"""The shared URL cache level (Redis, L2) behind each process's own cache (L1).

Two URL services stand for two workers: each has its own L1, both share one Redis. The outage
test runs a Redis server of its own and stops it under the service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from fixtures.database import free_port
from reference.settings import Settings
from reference.urls.cache import RedisUrlCache, open_redis
from reference.urls.service import LocalSigner, UnifiedUrlService
from reference.web.metrics import Metrics

WINDOW = 3600
#: The next window's start: entries expire in Redis at a window end, which must lie ahead.
T0 = (int(time.time()) // WINDOW + 1) * WINDOW
OBJECTS = [("image_fast", f"u/j/{i}.png") for i in range(5)]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def worker(url: str, prefix: str, clock: Clock, retry_clock: Clock | None = None):
    settings = dataclasses.replace(Settings(), url_window_s=WINDOW)
    signer = LocalSigner(settings.storage_key, settings.public_url, WINDOW, clock)
    shared = RedisUrlCache(open_redis(url), prefix, clock=retry_clock or time.monotonic)
    return UnifiedUrlService(settings, Metrics(), signer, clock, shared)


def level(service: UnifiedUrlService, name: str, lvl: str) -> float:
    labels = {"mode": "unified", "level": lvl}
    return service.metrics.registry.get_sample_value(f"{name}_total", labels) or 0.0


async def urls(service: UnifiedUrlService) -> list[str | None]:
    return [r.url for r in await service.sign_objects(OBJECTS)]


async def test_a_url_signed_by_one_worker_is_an_l2_hit_for_the_other(
    redis_url: str, redis_prefix: str
) -> None:
    clock = Clock(T0 + 10)
    one, two = worker(redis_url, redis_prefix, clock), worker(redis_url, redis_prefix, clock)
    try:
        first = await urls(one)
        clock.now += 60  # later in the same window: the other worker gets the same bytes
        second = await urls(two)
        assert first == second
        assert all(first)
        assert level(two, "url_cache_level_misses", "l1") == len(OBJECTS)
        assert level(two, "url_cache_level_hits", "l2") == len(OBJECTS)
        await urls(two)
        assert level(two, "url_cache_level_hits", "l1") == len(OBJECTS)

        clock.now = T0 + WINDOW + 1  # the next window: another key, signed again
        one.clear_cache()
        third = await urls(one)
        assert third != first
        assert level(one, "url_cache_level_misses", "l2") == 2 * len(OBJECTS)
        two.clear_cache()
        assert await urls(two) == third
    finally:
        await one.close()
        await two.close()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the outage test runs one of its own")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    try:
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield process
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


async def test_a_redis_outage_degrades_to_l1_without_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    clock, retry_clock = Clock(T0 + 10), Clock(0.0)
    with private_redis(port) as server:
        service = worker(f"redis://127.0.0.1:{port}/0", "wsbtest:", clock, retry_clock)
        try:
            signed = await urls(service)
            server.terminate()
            server.wait(timeout=10)
            service.clear_cache()
            with caplog.at_level(logging.WARNING, logger="reference.urls.cache"):
                assert await urls(service) == signed
                assert await urls(service) == signed  # from L1 now
                service.clear_cache()
                assert await urls(service) == signed  # L2 skipped: no second wait
            assert [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
            assert level(service, "url_cache_errors", "l2") == 1

            with private_redis(port):
                retry_clock.now += 60  # past the retry interval
                service.clear_cache()
                assert await urls(service) == signed
                assert level(service, "url_cache_errors", "l2") == 1
                assert "reachable again" in caplog.text
        finally:
            await service.close()
