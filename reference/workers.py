"""The service on one port: one process, or ``WORKERS`` processes under gunicorn's arbiter.

Several workers run as aiohttp documents its deployment: gunicorn's pre-fork arbiter with
``aiohttp.GunicornWebWorker``. The arbiter binds the port once and forks the workers (each builds
its own app, pool and caches after the fork), restarts a worker that dies, stops them gracefully
on SIGTERM and hands a dead worker's metrics files to prometheus-client's multiprocess mode.
What the workers share lives outside them: PostgreSQL (data, the background lease) and Redis
(URL cache L2, LSH index). Nothing here imports the app before the fork.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from gunicorn.app.base import BaseApplication

from reference.settings import Settings
from reference.web.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT_S: Final = 10


def _post_fork(server: Any, worker: Any) -> None:
    # prometheus-client picks its value store at import; the arbiter may have imported it first.
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ[MULTIPROC_ENV])  # type: ignore[no-untyped-call]


class ServiceArbiter(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        self.cfg.set("bind", [f"{s.host}:{s.port}"])
        self.cfg.set("workers", s.workers)
        self.cfg.set("worker_class", "aiohttp.GunicornWebWorker")
        self.cfg.set("graceful_timeout", GRACEFUL_TIMEOUT_S)
        self.cfg.set("proc_name", "workspace-bench")
        self.cfg.set("post_fork", _post_fork)
        self.cfg.set("child_exit", _child_exit)

    def load(self) -> Callable[[], Awaitable[web.Application]]:
        settings = self.settings

        async def app_factory() -> web.Application:
            from reference.app import create_app

            return create_app(settings)

        return app_factory


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit status."""
    if settings.workers == 1:
        from reference.app import create_app

        web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="wsb-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    log.info("%d workers on %s:%d (gunicorn)", settings.workers, settings.host, settings.port)
    try:
        ServiceArbiter(settings).run()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 0
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
