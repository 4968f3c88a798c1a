"""Two service workers behind one port (``WORKERS=2``), sharing PostgreSQL and Redis.

The service runs as ``python -m reference`` in its own process group, as ``make serve`` runs it;
a request reaches one worker or the other as the kernel hands out connections, so each check
opens fresh connections until it has an answer from both (``/healthz`` names the worker).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.database import DatabaseInfo, create_database, drop_database, run_async
from fixtures.prepare import ensure_dataset
from fixtures.processes import ServiceProcess
from fixtures.pytest_plugin import SeededDataset
from reference.batch.operations import Kind, Selection, create_operation
from reference.db.redis_keys import unlink_prefix
from tests._batch_support import add_assets, connect, new_user, wait_for
from tests.conftest import SETTINGS, auth_headers

pytestmark = pytest.mark.slow

READY_S = 60.0
LEASE_HOLDERS = """
select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted and a.datname = current_database()
  and a.application_name = 'workspace-bench lease batch-background'
"""
COUNT = "http_request_duration_seconds_count"
OPERATION_DONE = "select true from batch_operations where id = $1 and status = 'done'"


@dataclass(frozen=True)
class Served:
    url: str
    dsn: str
    log: Path
    user: UUID
    operation: UUID


@pytest.fixture(scope="module")
def two_workers(
    database: DatabaseInfo,
    seeded_template: SeededDataset,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One service for the module, on its own copy of the tiny dataset and its own Redis prefix.
    An operation is left 'running' before the start (as after a crash): one worker resumes it."""

    async def leave_running(dsn: str) -> tuple[UUID, UUID]:
        conn = await connect(dsn)
        try:
            user = new_user()
            ids = await add_assets(conn, user, ["image", "video"] * 5)
            selection = Selection(tuple(ids))
            op, _ = await create_operation(conn, user, Kind.DISMISS, selection, max_ids=100)
            return user, op.id
        finally:
            await conn.close()

    dsn = run_async(create_database(database.dsn, "wsb_copy", seeded_template.dsn))
    prefix = f"wsbtest:{uuid.uuid4().hex[:12]}:"
    tmp = tmp_path_factory.mktemp("workers")
    try:
        user, operation = run_async(leave_running(dsn))
        run_async(ensure_dataset(dsn, seeded_template.spec, tmp / "storage"))
        # Every worker verifies the tests' tokens: the secrets go through the environment.
        env = {
            **os.environ,
            **SETTINGS.secrets(),
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
        }
        log_path = tmp / "service.log"
        with ServiceProcess(dsn, "unified", tmp / "storage", log_path, env=env, workers=2) as svc:
            yield Served(svc.url, dsn, log_path, user, operation)
    finally:
        unlink_prefix(redis_url, prefix)
        run_async(drop_database(database.dsn, dsn))


async def on_each_worker(
    url: str, call: Callable[[aiohttp.ClientSession], Awaitable[Any]]
) -> dict[int, Any]:
    """``call`` once on each of the two workers: {worker pid: what it returned}. The second
    worker may still be starting when the first answers: keep trying until the deadline."""
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        # One connection per session, so both requests below reach the same worker.
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        async with aiohttp.ClientSession(url, connector=connector) as session:
            async with session.get("/healthz") as resp:
                pid = (await resp.json())["worker"]
            if pid not in answers:
                answers[pid] = await call(session)
        if len(answers) == 2:
            return answers
        await asyncio.sleep(0.05)
    raise AssertionError(f"in {READY_S} s, connections reached only worker(s) {sorted(answers)}")


async def get_json(session: aiohttp.ClientSession, path: str, user: UUID) -> Any:
    async with session.get(path, headers=auth_headers(user)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def counter_total(exposition: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession(url) as session, session.get("/metrics") as resp:
        return await resp.text()


async def test_two_workers_serve_one_user_consistently(
    two_workers: Served, seeded_template: SeededDataset
) -> None:
    heavy = seeded_template.heavy_user
    before = await scrape(two_workers.url)

    async def thumbnails(session: aiohttp.ClientSession) -> list[str]:
        page = await get_json(session, "/v1/workspace?limit=50", heavy)
        return [a["thumbnail_url"] for a in page["assets"]]

    pages = list((await on_each_worker(two_workers.url, thumbnails)).values())
    assert pages[0] == pages[1]
    assert all(pages[0])

    after = await scrape(two_workers.url)

    def delta(name: str, **labels: str) -> float:
        return counter_total(after, name, **labels) - counter_total(before, name, **labels)

    # The second worker found the first one's URLs in Redis, not in its own cache.
    assert delta("url_cache_level_hits_total", level="l2") == len(pages[0])
    assert delta("url_cache_misses_total") == len(pages[0])


async def test_an_undo_on_one_worker_is_seen_by_the_other(two_workers: Served) -> None:
    user, operation = two_workers.user, two_workers.operation
    conn = await connect(two_workers.dsn)
    try:
        assert await wait_for(conn, OPERATION_DONE, operation)
    finally:
        await conn.close()
    undone: list[int] = []

    async def undo_or_read(session: aiohttp.ClientSession) -> Any:
        if not undone:
            async with session.post("/v1/batch/undo", headers=auth_headers(user)) as resp:
                assert resp.status == 200, await resp.text()
                undone.append(resp.status)
                return None
        op = await get_json(session, f"/v1/batch/operations/{operation}", user)
        page = await get_json(session, "/v1/workspace?limit=50", user)
        return op["operation"], page["assets"]

    answers = list((await on_each_worker(two_workers.url, undo_or_read)).values())
    op, assets = answers[1]
    assert (op["state"], op["status"]) == ("undone", "done")
    assert len(assets) == 10


async def test_background_work_runs_in_one_worker(two_workers: Served) -> None:
    conn = await connect(two_workers.dsn)
    try:
        assert await wait_for(conn, OPERATION_DONE, two_workers.operation)
        assert await conn.fetchval(LEASE_HOLDERS) == 1
    finally:
        await conn.close()
    log = two_workers.log.read_text(errors="replace")
    assert log.count("lease 'batch-background' held by pid") == 1, log
    assert log.count("batch: resuming 1 unfinished operations") == 1, log


async def test_metrics_count_every_worker_requests(two_workers: Served) -> None:
    async def openapi(session: aiohttp.ClientSession) -> int:
        async with session.get("/openapi.json") as resp:
            return resp.status

    labels = {"route": "/openapi.json", "status": "200"}
    before = counter_total(await scrape(two_workers.url), COUNT, **labels)
    assert set((await on_each_worker(two_workers.url, openapi)).values()) == {200}
    async with aiohttp.ClientSession(two_workers.url) as session:
        for _ in range(5):
            async with session.get("/openapi.json") as resp:
                assert resp.status == 200
    assert counter_total(await scrape(two_workers.url), COUNT, **labels) - before == 7
