"""The fault suite's parts: a PostgreSQL cluster of its own (to terminate, freeze and restart), the
service as a real process (to SIGKILL), clients that record what they saw, and the invariants."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg

from fixtures.database import LocalCluster
from fixtures.processes import Child, ServiceProcess
from tests._batch_support import connect, new_user
from tests.conftest import SETTINGS, auth_headers

ROOT = Path(__file__).resolve().parents[2]
SERVICE_BACKENDS = """
select pid from pg_stat_activity
where application_name = 'workspace-bench' and datname = current_database()
"""
#: Bounds the service runs with here: short, so a fault's effect is seen within seconds.
SERVICE_ENV = {
    "WORKERS": "1",  # the process a fault SIGKILLs is the one serving
    "DB_STATEMENT_TIMEOUT_MS": "1000",
    "DB_LOCK_TIMEOUT_MS": "500",
    "DB_ACQUIRE_TIMEOUT_MS": "1000",
    "HEALTHZ_TIMEOUT_MS": "1000",
    "BATCH_INLINE_MAX": "50",
    "BATCH_CHUNK_SIZE": "100",
    "BATCH_RETRY_BASE_MS": "100",
    "BATCH_RETRY_MAX_MS": "1000",
    "BATCH_LEASE_S": "2",
    "POOL_MAX_SIZE": "8",
    "PURGE_INTERVAL_S": "3600",
}
#: What a client waits at most: far above any bound above, so a wait we measure is the service's.
CLIENT_TIMEOUT_S = 30.0
ADD_IMAGES = """
insert into images (id, user_id, prompt, status, quality, storage_path, thumbnail_path, metadata)
select gen_random_uuid(), $1::uuid, 'prompt ' || i, 'completed', 'fast',
       $1::text || '/' || i || '.png', $1::text || '/' || i || '_thumb.webp',
       jsonb_build_object('n', i)
from generate_series(1, $2) as i
returning id
"""


# --- the cluster ---------------------------------------------------------------------------


def postmaster_command(cluster: LocalCluster) -> list[str]:
    assert cluster.directory is not None
    return shlex.split((cluster.directory / "data" / "postmaster.opts").read_text())


def restart_cluster(cluster: LocalCluster) -> float:
    """Stop the server (fast shutdown: every connection is cut) and start it on the same port;
    returns the seconds it was away."""
    assert cluster.child is not None
    assert cluster.directory is not None
    command = postmaster_command(cluster)
    started = time.monotonic()
    cluster.child.stop(signal.SIGINT, 30)
    # Not start_child: its parent-death signal fires when the calling thread ends, and this
    # runs in a worker thread; the suite's cluster fixture stops the server at the end.
    log_path = cluster.directory / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, user=cluster.run_as,
            start_new_session=True,
        )  # fmt: skip
    cluster.child = Child(tuple(command), process, log_path)
    deadline = time.monotonic() + 30
    while not _ready(cluster):
        assert time.monotonic() < deadline, "the server did not come back"
        time.sleep(0.05)
    return time.monotonic() - started


def _ready(cluster: LocalCluster) -> bool:
    ready = subprocess.run(
        [str(cluster.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(cluster.port)],
        check=False,
    )
    return ready.returncode == 0


async def service_backends(conn: asyncpg.Connection) -> list[int]:
    return [r["pid"] for r in await conn.fetch(SERVICE_BACKENDS)]


# --- the service -----------------------------------------------------------------------------


def service(dsn: str, storage_dir: Path, log_path: Path) -> ServiceProcess:
    """The service as a real process, with the suite's short timeouts and the tests' secrets
    (so the tokens of auth_headers() verify in it)."""
    env = {**os.environ, **SERVICE_ENV, **SETTINGS.secrets()}
    return ServiceProcess(dsn, "unified", storage_dir, log_path, env=env)


async def wait_ready(service: ServiceProcess, limit_s: float = 30.0) -> None:
    """Polled from the event loop, so the clients' load goes on while a service comes up."""
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while True:
            assert service.child is not None
            assert service.child.poll() is None, log_of(service)
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{service.url}/healthz") as response:
                    if response.status == 200:
                        return
            assert time.monotonic() < deadline, "the service did not become ready"
            await asyncio.sleep(0.05)


def kill(service: ServiceProcess) -> None:
    """SIGKILL, as a crash: no cleanup, no lease handed back."""
    assert service.child is not None
    service.child.process.send_signal(signal.SIGKILL)
    service.child.process.wait(timeout=30)


def log_of(service: ServiceProcess) -> str:
    return service.log_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def running(service: ServiceProcess) -> Any:
    service.spawn()
    try:
        await wait_ready(service)
        yield service
    finally:
        service.stop()


# --- clients -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    started: float
    ended: float
    status: int | str  # an HTTP status, or the client-side error's name
    request: str = ""

    @property
    def ok(self) -> bool:
        # 409: the service answered for the user's state (an operation still healing), not a fault
        return isinstance(self.status, int) and (self.status < 300 or self.status == 409)

    @property
    def wait(self) -> float:
        return self.ended - self.started


@dataclass
class Clients:
    """Requests from several users in a loop, each recorded with its status and timing."""

    urls: list[str]
    users: list[tuple[UUID, list[UUID]]]
    seen: list[Seen] = field(default_factory=list)
    #: Each 503's body and Retry-After header.
    unavailable: list[tuple[str, str | None]] = field(default_factory=list)
    stopping: bool = False

    async def _one(self, session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> None:
        started = time.monotonic()
        status: int | str
        try:
            async with session.request(method, url, **kw) as response:
                body = await response.text()
                status = response.status
                if status == 503:
                    self.unavailable.append((body, response.headers.get("Retry-After")))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = type(exc).__name__
        self.seen.append(Seen(started, time.monotonic(), status, f"{method} {url}"))

    async def _client(self, index: int) -> None:
        user, assets = self.users[index % len(self.users)]
        headers = auth_headers(user)
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            step = 0
            while not self.stopping:
                url = self.urls[(index + step) % len(self.urls)]
                chosen = [str(a) for a in assets[step % 5 :: 5][:3]]
                if step % 4 == 0:
                    await self._one(session, "GET", f"{url}/v1/trash?limit=5")
                elif step % 4 == 1:
                    await self._one(session, "GET", f"{url}/healthz")
                elif step % 4 == 2:
                    await self._one(
                        session, "POST", f"{url}/v1/batch/dismiss", json={"asset_ids": chosen}
                    )
                else:
                    await self._one(session, "POST", f"{url}/v1/batch/undo")
                step += 1
                await asyncio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def load(self, clients: int = 6) -> Any:
        tasks = [asyncio.create_task(self._client(i)) for i in range(clients)]
        try:
            yield self
        finally:
            self.stopping = True
            await asyncio.gather(*tasks)


async def add_users(conn: asyncpg.Connection, count: int, assets: int) -> list[tuple[UUID, list]]:
    users = []
    for _ in range(count):
        user = new_user()
        users.append((user, [r["id"] for r in await conn.fetch(ADD_IMAGES, user, assets)]))
    return users


# --- what clients saw, and what must hold afterwards ---------------------------------------------


@dataclass(frozen=True)
class Figures:
    fault: str
    requests: int
    failed: int
    statuses: str
    longest_wait_s: float
    fault_s: float
    recovered_s: float

    @classmethod
    def of(cls, fault: str, seen: list[Seen], injected: float, cleared: float) -> Figures:
        counts: dict[str, int] = {}
        for s in seen:
            counts[str(s.status)] = counts.get(str(s.status), 0) + 1
        failures_after = [s.ended for s in seen if not s.ok and s.ended > cleared]
        return cls(
            fault,
            len(seen),
            sum(not s.ok for s in seen),
            " ".join(f"{k}:{v}" for k, v in sorted(counts.items())),
            max(s.wait for s in seen),
            cleared - injected,
            max(failures_after, default=cleared) - cleared,
        )

    def row(self) -> str:
        return (
            f"{self.fault:<28} {self.requests:>8} {self.failed:>7} {self.longest_wait_s:>9.2f}"
            f" {self.fault_s:>7.2f} {self.recovered_s:>10.2f}  {self.statuses}"
        )


#: longest: the longest any request waited; fault: how long the fault lasted; recover: from the
#: fault's end until the last failed request (every request after it succeeded).
HEADER = (
    f"{'fault':<28} {'requests':>8} {'failed':>7} {'longest s':>9} {'fault s':>7}"
    f" {'recover s':>10}  statuses"
)

BOTH_PLACES = """
select (select count(*) from images i join trashed_images t using (id))
     + (select count(*) from videos v join trashed_videos t using (id))
"""
PLACES_OF = """
select id from images where id = any($1::uuid[])
union all select id from trashed_images where id = any($1::uuid[])
"""
INCONSISTENT = """
select o.id, o.status, o.done, o.total from batch_operations o
where o.status = 'done' and (o.done <> o.total or exists (
    select 1 from batch_operation_items it
    where it.operation_id = o.id and it.applied <> (o.target = 'applied')))
"""
UNFINISHED = "select count(*) from batch_operations where status <> 'done'"


async def check_invariants(dsn: str, assets: list[UUID], limit_s: float = 30.0) -> None:
    """Every asset live or in the trash exactly once, every operation finished (within
    ``limit_s``: none stuck) and its items where its state says."""
    conn = await connect(dsn)
    try:
        started = time.monotonic()
        while await conn.fetchval(UNFINISHED):
            assert time.monotonic() - started < limit_s, "an operation is stuck"
            await asyncio.sleep(0.05)
        assert await conn.fetchval(BOTH_PLACES) == 0, "an asset is both live and in the trash"
        found = [r["id"] for r in await conn.fetch(PLACES_OF, assets)]
        assert sorted(found) == sorted(assets), "an asset is missing or twice"
        assert await conn.fetch(INCONSISTENT) == [], "the undo log disagrees with the assets"
    finally:
        await conn.close()


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
