"""The service on one port: one process, or ``WORKERS`` processes under a small supervisor.

Each worker is ``python -m reference`` binding the port itself with ``SO_REUSEPORT``: the kernel
gives every worker its own accept queue and spreads new connections over them by hash. Workers
sharing one inherited socket (gunicorn's arbiter with ``aiohttp.GunicornWebWorker``) accept in
whatever order their event loops wake, and on a lightly loaded machine one worker takes nearly
every connection (tried here: 60 fresh connections, one worker). The supervisor starts the
workers, restarts one that dies, stops them all on SIGTERM or Ctrl-C, and runs them in
prometheus-client's multiprocess mode so any worker's ``/metrics`` counts every worker.
What the workers share lives outside them: PostgreSQL (data, the background lease) and Redis
(URL cache L2, LSH index).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from types import FrameType
from typing import Final

from reference.settings import Settings
from reference.web.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

#: Set in a worker's environment: serve in this process, on a ``SO_REUSEPORT`` socket.
WORKER_ENV: Final = "WORKSPACE_BENCH_WORKER"
STOP_TIMEOUT_S: Final = 15.0
#: A worker that dies sooner than this after its start counts towards giving up.
EARLY_EXIT_S: Final = 10.0
MAX_EARLY_EXITS: Final = 3
POLL_S: Final = 0.2
#: Allocations between collections of the young generation in a served process (default 700).
YOUNG_GC_THRESHOLD: Final = 20_000
#: Seconds a thread holds the GIL before another that waits for it gets it (default 0.005).
GIL_SWITCH_INTERVAL_S: Final = 0.0005


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit status."""
    worker = os.environ.get(WORKER_ENV) == "1"
    if settings.workers == 1 or worker:
        from aiohttp import web

        from reference.app import create_app

        app = create_app(settings)
        # Everything made so far (modules, routes, the app) lives as long as the process:
        # frozen, the collector's full passes stop walking it. They were the workspace page's
        # p99 under load: 32 ms unfrozen, 10 ms frozen (benchmarks.hot_path, 8 connections).
        gc.freeze()
        # A page makes about a thousand short-lived containers, nearly all freed by their
        # reference counts before a collection could find them: at the default 700
        # allocations, the young generation was collected every request or two
        # (gc_collect_main, 4% of the served process's CPU under load, py-spy).
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        # CPU work in a thread (an organize index build: 14 s at 1,000,000 assets) holds the GIL
        # for the interval at a time, and the event loop waits that long at each of the dozen
        # hand-offs a request makes: at the default 5 ms, /healthz took 11.8 ms p50 during a
        # build, 2.5 ms at 0.5 ms, and the build no longer (one process, scripted probe).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        web.run_app(app, host=settings.host, port=settings.port, access_log=None, reuse_port=worker)
        return 0
    if settings.port == 0:
        raise SystemExit("WORKERS > 1 needs a fixed PORT: every worker binds the same one")
    return Supervisor(settings.workers, settings.secrets()).run()


class Supervisor:
    def __init__(self, workers: int, secrets: Mapping[str, str]) -> None:
        self.workers = workers
        # Secrets generated here (unset ones) go to every worker: a token or URL signed by one
        # must verify on the others.
        self.secrets = dict(secrets)
        self.stopping = False
        self.children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
        self.early_exits = 0

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _start(self, env: dict[str, str]) -> None:
        child = subprocess.Popen([sys.executable, "-m", "reference"], env=env)
        self.children[child.pid] = (child, time.monotonic())

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="wsb-metrics-")
        env = {**os.environ, **self.secrets, MULTIPROC_ENV: metrics_dir, WORKER_ENV: "1"}
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        log.info("supervisor pid %d: %d workers (SO_REUSEPORT)", os.getpid(), self.workers)
        try:
            for _ in range(self.workers):
                self._start(env)
            while not self.stopping:
                time.sleep(POLL_S)
                if self._reap(metrics_dir):
                    return 1
                for _ in range(self.workers - len(self.children)):
                    self._start(env)
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _reap(self, metrics_dir: str) -> bool:
        """Forget dead workers; True when they keep dying at start (give up)."""
        from prometheus_client import multiprocess

        for pid, (child, started) in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[pid]
            multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
            if self.stopping:
                continue
            log.warning("worker %d exited with code %s; starting another", pid, code)
            if time.monotonic() - started < EARLY_EXIT_S:
                self.early_exits += 1
                if self.early_exits >= MAX_EARLY_EXITS:
                    log.error("workers exit right after their start: giving up")
                    return True
        return False

    def _stop_all(self) -> None:
        for child, _ in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child, _ in self.children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
