"""The service under test in its own process, and the data it serves. No locust import here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Final

from fixtures import storage_files
from fixtures.database import free_port
from fixtures.prepare import prepare_dataset, say
from fixtures.spec import spec_for
from loadtests._config import REPO
from reference.db.migrate import migrate
from reference.db.pool import connect

HAS_IMAGES_TABLE: Final = "select to_regclass('images') is not null"
HAS_ASSETS: Final = "select exists (select 1 from images limit 1)"
READY_TIMEOUT_S: Final = 120.0


async def prepare(dsn: str, scale: str, storage_dir: Path) -> None:
    """Load ``scale`` into an empty database (with its stored files); else migrate and
    make sure the files are there."""
    async with connect(dsn) as conn:
        loaded = await conn.fetchval(HAS_IMAGES_TABLE) and await conn.fetchval(HAS_ASSETS)
    if not loaded:
        await prepare_dataset(dsn, spec_for(scale), storage_dir=storage_dir)
        return
    say("database already holds assets: applying pending migrations only")
    await migrate(dsn)
    await write_storage_objects(dsn, storage_dir)


async def write_storage_objects(dsn: str, storage_dir: Path, progress: bool = True) -> None:
    async with connect(dsn) as conn:
        report = await storage_files.write_storage_objects(conn, storage_dir, progress=progress)
    say(report.summary())


def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as resp,  # noqa: S310
        ):
            if resp.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"the service did not answer {base_url}/healthz in {READY_TIMEOUT_S} s")


@contextlib.contextmanager
def service(
    dsn: str,
    mode: str,
    storage_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> Iterator[str]:
    """``python -m reference`` in its own process (``WORKERS`` of them); yields its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "URL_MODE": mode,
        "STORAGE_DIR": str(storage_dir),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "reference"], env=env, cwd=REPO, stdout=log, stderr=log
    )
    try:
        wait_ready(base_url, process)
        say(f"service ({mode} URLs) at {base_url}, pid {process.pid}")
        yield base_url
    finally:
        # SIGTERM, not SIGINT: a non-interactive shell starts background jobs with SIGINT ignored.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
