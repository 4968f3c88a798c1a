"""Faults under load: what clients see, and that the data ends right.

Each test runs the service as a real process on the suite's own cluster, with six clients
looping over reads, small dismisses and undos, and a 10,000-asset batch in the background; it
injects one fault, then checks that every wait was bounded, that all requests succeed again
soon after the fault clears, and the invariants (every asset live or in the trash exactly once,
the undo log consistent, no operation stuck). ``make faults`` prints the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import asyncpg

from fixtures.database import LocalCluster
from tests._batch_support import asset_files, connect, wait_for
from tests.conftest import auth_headers
from tests.faults._support import (
    Clients,
    Figures,
    add_users,
    check_invariants,
    frozen,
    kill,
    log_of,
    restart_cluster,
    running,
    service_backends,
    wait_ready,
)
from tests.faults._support import service as make_service

#: Longest a request may wait under any fault: the service's bounds are 1-2 s (see SERVICE_ENV),
#: the clients would wait 30 s.
WAIT_BOUND_S = 8.0
#: Every request succeeds again within this long after a fault clears.
RECOVERY_BOUND_S = 8.0
BACKGROUND_ASSETS = 5_000
FREEZE_S = 5.0
STARTED = "select true from batch_operations where id = $1 and done > 0"
OPERATION = """
select status, done, total, attempts, last_error, lease_owner from batch_operations where id = $1
"""


async def _big_batch(url: str, user: UUID, assets: list[UUID], kind: str = "dismiss") -> str:
    """Start the background batch, as a client does: a 503 (the suite's timeouts are short,
    and a busy machine can pass them) is retried after its Retry-After, a few times."""
    key = f"big-{kind}-{assets[0]}-{len(assets)}"
    headers = {**auth_headers(user), "Idempotency-Key": key}
    async with aiohttp.ClientSession() as session:
        for _attempt in range(10):
            ids = {"asset_ids": [str(a) for a in assets]}
            route = f"{url}/v1/batch/{kind}"
            async with session.post(route, json=ids, headers=headers) as response:
                body = await response.json()
                if response.status != 503:
                    assert response.status == 202, body
                    return str(body["operation"]["id"])
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError(f"the batch could not start: {body}")


async def _watch(dsn: str, op_id: str, statuses: set[str], stop: asyncio.Event) -> None:
    """Record the background operation's statuses, through the fault (reconnecting)."""
    while not stop.is_set():
        with contextlib.suppress(
            OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError
        ):
            conn = await connect(dsn)
            try:
                while not stop.is_set():
                    statuses.add((await conn.fetchrow(OPERATION, UUID(op_id)))["status"])
                    await asyncio.sleep(0.05)
            finally:
                conn.terminate()
        await asyncio.sleep(0.05)


async def _under_load(
    name: str,
    cluster: LocalCluster,
    tmp_path: Path,
    inject: Callable[[asyncpg.Connection], Awaitable[None]],
    record: list[Figures],
) -> tuple[Figures, dict[str, object]]:
    """Load, a background batch, then ``inject`` (given an admin connection); the fault is
    over when it returns."""
    conn = await connect(cluster.dsn)
    try:
        users = await add_users(conn, 3, 20)
        ((big_user, big_assets),) = await add_users(conn, 1, BACKGROUND_ASSETS)
    finally:
        await conn.close()
    service = make_service(cluster.dsn, tmp_path, tmp_path / "service.log")
    statuses: set[str] = set()
    stop_watch = asyncio.Event()
    async with running(service):
        clients = Clients([service.url], users)
        async with clients.load():
            await asyncio.sleep(0.5)
            op_id = await _big_batch(service.url, big_user, big_assets)
            watcher = asyncio.create_task(_watch(cluster.dsn, op_id, statuses, stop_watch))
            await asyncio.sleep(0.1)
            admin = await connect(cluster.dsn)
            try:
                injected = time.monotonic()
                await inject(admin)
                cleared = time.monotonic()
            finally:
                admin.terminate()
            await asyncio.sleep(2.5)
        await check_invariants(cluster.dsn, big_assets + [x for _, ids in users for x in ids])
        stop_watch.set()
        await watcher
        log = log_of(service)
    figures = Figures.of(name, clients.seen, injected, cleared)
    record.append(figures)
    assert "unhandled error" not in log, log
    for body, retry_after in clients.unavailable:
        assert retry_after is not None, body
        answer = json.loads(body)
        said = answer["error"] if "error" in answer else f"database_{answer['database']}"
        assert said in ("database_unavailable", "database_timeout"), body
        assert "127.0.0.1" not in body, body
        assert str(urlsplit(cluster.dsn).port) not in body, body
    assert "500" not in figures.statuses.split(), figures
    assert figures.longest_wait_s < WAIT_BOUND_S, figures
    assert figures.recovered_s < RECOVERY_BOUND_S, figures
    return figures, {"op_statuses": statuses, "log": log, "seen": clients.seen}


async def test_connections_terminated_under_load(fault_cluster, tmp_path, record_figures):
    async def terminate(admin: asyncpg.Connection) -> None:
        # Every 0.1 s for a second: on a quiet machine the batch's chunks are short, and a
        # sparser cut can fall between them.
        for _ in range(10):
            for pid in await service_backends(admin):
                await admin.execute("select pg_terminate_backend($1)", pid)
            await asyncio.sleep(0.1)

    _, seen = await _under_load(
        "terminate connections", fault_cluster, tmp_path, terminate, record_figures
    )
    # The watcher polls the status, and a retry after 100 ms can fall between two polls: the
    # worker's log line of the retry counts as well.
    retried = "retrying" in seen["op_statuses"] or re.search(
        r"batch operation \S+: database_\w+: \w+; retry in", seen["log"]
    )
    assert retried, "the background batch was not hit; nothing tested"


async def test_database_restarted_under_load(fault_cluster, tmp_path, record_figures):
    async def restart(_: asyncpg.Connection) -> None:
        await asyncio.to_thread(restart_cluster, fault_cluster)

    figures, seen = await _under_load(
        "restart PostgreSQL", fault_cluster, tmp_path, restart, record_figures
    )
    assert figures.failed > 0
    # While the server is down the status cannot be written; the worker's log says it retried.
    assert re.search(r"batch operation \S+: database_unavailable: \w+; retry in", seen["log"])


async def test_database_frozen_under_load(fault_cluster, tmp_path, record_figures):
    async def freeze(admin: asyncpg.Connection) -> None:
        with frozen(await service_backends(admin)):
            await asyncio.sleep(FREEZE_S)

    figures, seen = await _under_load(
        f"freeze backends {FREEZE_S:.0f} s", fault_cluster, tmp_path, freeze, record_figures
    )
    assert "503" in figures.statuses
    # The service's bounds (a 2 s statement, 1 s to give the connection up) end each wait
    # well before the server thaws.
    assert figures.longest_wait_s < FREEZE_S - 1, sorted(seen["seen"], key=lambda s: -s.wait)[:5]


async def test_worker_killed_mid_batch_is_taken_over(fault_cluster, tmp_path, record_figures):
    """SIGKILL the process running a batch: the other process takes it over when the lease
    lapses; the killed one comes back and serves again."""
    conn = await connect(fault_cluster.dsn)
    try:
        users = await add_users(conn, 3, 20)
        ((big_user, big_assets),) = await add_users(conn, 1, BACKGROUND_ASSETS)
        doomed = make_service(fault_cluster.dsn, tmp_path, tmp_path / "doomed.log")
        survivor = make_service(fault_cluster.dsn, tmp_path, tmp_path / "survivor.log")
        async with running(survivor), running(doomed):
            assert survivor.child is not None
            survivor_pid = survivor.child.pid
            clients = Clients([doomed.url, survivor.url], users)
            async with clients.load():
                await asyncio.sleep(0.5)
                op_id = UUID(await _big_batch(doomed.url, big_user, big_assets, "delete"))
                await wait_for(conn, STARTED, op_id)
                kill(doomed)
                killed_at = time.monotonic()
                while (await conn.fetchrow(OPERATION, op_id))["status"] != "done":
                    assert time.monotonic() - killed_at < 30, "nobody took the batch over"
                    await asyncio.sleep(0.05)
                taken_over_s = time.monotonic() - killed_at
                finished = await conn.fetchrow(OPERATION, op_id)
                doomed.spawn()
                await wait_ready(doomed)
                cleared = time.monotonic()
                await asyncio.sleep(2.0)
        await check_invariants(fault_cluster.dsn, big_assets + [x for _, ids in users for x in ids])
    finally:
        await conn.close()
    assert f":{survivor_pid}:" in finished["lease_owner"]
    figures = Figures.of(f"SIGKILL worker (+{taken_over_s:.1f}s)", clients.seen, killed_at, cleared)
    record_figures.append(figures)
    assert "500" not in figures.statuses.split()
    assert figures.recovered_s < RECOVERY_BOUND_S, figures


async def test_clients_closing_downloads_are_not_errors(fault_cluster, tmp_path, record_figures):
    conn = await connect(fault_cluster.dsn)
    try:
        ((user, assets),) = await add_users(conn, 1, 16)
        await asset_files(conn, tmp_path, assets, size=1 << 20)
    finally:
        await conn.close()
    service = make_service(fault_cluster.dsn, tmp_path, tmp_path / "service.log")
    seen = []
    aborts = 5
    async with running(service), aiohttp.ClientSession(headers=auth_headers(user)) as session:
        for _ in range(aborts):
            started = time.monotonic()
            response = await session.post(
                f"{service.url}/v1/batch/download", json={"asset_ids": [str(a) for a in assets]}
            )
            assert response.status == 200
            await response.content.readexactly(256 * 1024)
            response.close()  # the browser tab closes mid-download
            seen.append((started, time.monotonic()))
        deadline = time.monotonic() + 10
        while True:
            async with session.get(f"{service.url}/metrics") as metrics:
                text = await metrics.text()
            counted = _count(text, "/v1/batch/download", "499")
            if counted == aborts or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        log = log_of(service)
    assert counted == aborts
    assert _count(text, "/v1/batch/download", "500") == 0
    assert log.count("client closed POST /v1/batch/download") == aborts, log
    assert "Traceback" not in log, log
    record_figures.append(
        Figures(
            "client closes download", aborts, 0, f"499:{aborts}", max(e - s for s, e in seen), 0, 0
        )
    )


def _count(metrics: str, route: str, status: str) -> int:
    pattern = re.compile(
        r'^http_request_duration_seconds_count\{method="POST",route="'
        + re.escape(route)
        + r'",status="'
        + status
        + r'"\} (\S+)$',
        re.M,
    )
    match = pattern.search(metrics)
    return int(float(match.group(1))) if match else 0
