"""The process toolkit on real child processes: health waits, group stops, logs, parent death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixtures.processes import (
    PROGRESS,
    Child,
    ChildExited,
    NotReady,
    ServiceProcess,
    TimedOut,
    answers_200,
    free_port,
    live_group_members,
    run_child,
    start_child,
    wait_healthy,
    wait_until,
)
from tests.conftest import SETTINGS

HEALTH_SERVER = textwrap.dedent(
    """
    import http.server, sys

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    print("health server starting", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """
)
#: A child that starts a grandchild; ``argv[1]`` says whether each of them ignores SIGTERM.
FAMILY = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    parent_ignores, grandchild_ignores = sys.argv[1] == "1", sys.argv[2] == "1"
    if parent_ignores:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    nap = "import signal, time; %s; time.sleep(600)" % (
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)" if grandchild_ignores else "pass"
    )
    grandchild = subprocess.Popen([sys.executable, "-c", nap])
    print("grandchild-pid", grandchild.pid, flush=True)
    time.sleep(600)
    """
)
#: Starts a sleeper through the toolkit, says its pid, then waits to be killed.
OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fixtures.processes import start_child
    child = start_child(
        [sys.executable, "-c", "import time; time.sleep(600)"], log_path=Path(sys.argv[1])
    )
    print(child.pid, flush=True)
    time.sleep(600)
    """
)
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
Family = Callable[[bool, bool], tuple[Child, int]]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def grandchild_pid(log: Path) -> int | None:
    said = [line for line in log.read_text().splitlines() if line.startswith("grandchild-pid ")]
    return int(said[0].split()[1]) if said else None


@pytest.fixture
def family(tmp_path: Path) -> Iterator[Family]:
    """Starts :data:`FAMILY`; returns the child and the grandchild's pid. Stops what is left."""
    started: list[Child] = []

    def start(parent_ignores: bool, grandchild_ignores: bool) -> tuple[Child, int]:
        flags = [str(int(parent_ignores)), str(int(grandchild_ignores))]
        command = [sys.executable, "-c", FAMILY, *flags]
        child = start_child(command, log_path=tmp_path / "family.log", echo="  | ")
        started.append(child)
        wait_until(child, lambda: grandchild_pid(child.log_path) is not None, "the grandchild", 30)
        return child, grandchild_pid(child.log_path) or 0

    yield start
    for child in started:
        child.stop(signal.SIGKILL)


def test_health_wait_returns_once_the_child_answers_and_the_log_is_kept(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    log = tmp_path / "logs" / "health.log"
    child = start_child([sys.executable, "-c", HEALTH_SERVER, str(port)], log_path=log, echo="> ")
    try:
        wait_healthy(child, f"http://127.0.0.1:{port}/healthz", timeout_s=60)
        assert answers_200(f"http://127.0.0.1:{port}/healthz")
        assert not answers_200(f"http://127.0.0.1:{port}/elsewhere")
    finally:
        code = child.stop()
    assert code == -signal.SIGTERM
    assert not alive(child.pid)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ ")
    assert "health server starting" in lines
    assert "> health server starting" in capfd.readouterr().err


def test_health_wait_gives_up_after_its_timeout(tmp_path: Path) -> None:
    child = start_child(SLEEP, log_path=tmp_path / "sleep.log")
    try:
        with pytest.raises(NotReady, match=r"not ready in 1 s; log: .*sleep\.log"):
            wait_healthy(child, f"http://127.0.0.1:{free_port()}/healthz", timeout_s=1)
        assert child.poll() is None
    finally:
        child.stop()


def test_health_wait_names_a_child_that_exits_with_its_last_lines(tmp_path: Path) -> None:
    script = "import sys; print('cannot bind: address in use'); sys.exit(3)"
    child = start_child([sys.executable, "-c", script], log_path=tmp_path / "exit.log")
    with pytest.raises(ChildExited, match=r"(?s)exited with code 3: .*cannot bind: address in use"):
        wait_healthy(child, f"http://127.0.0.1:{free_port()}/healthz", timeout_s=60)


def test_stop_reaches_a_grandchild_that_outlives_its_parent(family: Family) -> None:
    child, grandchild = family(False, True)
    assert set(live_group_members(child.pid)) == {child.pid, grandchild}

    assert child.stop(timeout_s=1) == -signal.SIGTERM
    assert not alive(grandchild)
    assert live_group_members(child.pid) == []


def test_stop_kills_a_group_that_ignores_sigterm(family: Family) -> None:
    child, grandchild = family(True, True)
    assert child.stop(timeout_s=1) == -signal.SIGKILL
    assert not alive(child.pid)
    assert not alive(grandchild)


def test_stop_of_a_group_that_obeys_sigterm_needs_no_sigkill(family: Family) -> None:
    child, grandchild = family(False, False)
    assert child.stop(timeout_s=60) == -signal.SIGTERM
    assert not alive(grandchild)
    assert child.stop() == -signal.SIGTERM  # a second stop is a no-op


def test_run_child_returns_exit_code_and_last_lines(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(40): print('line', i)\nsys.exit(4)"
    log = tmp_path / "run.log"
    code, tail = run_child([sys.executable, "-c", script], log_path=log, timeout_s=60)
    assert code == 4
    assert tail.splitlines()[-1] == "line 39"
    assert len(tail.splitlines()) == 30
    assert "line 0" in log.read_text()


def test_run_child_stops_the_group_at_its_timeout(tmp_path: Path) -> None:
    with pytest.raises(TimedOut, match="timed out after 5 s"):
        run_child(
            [sys.executable, "-c", FAMILY, "0", "0"], log_path=tmp_path / "t.log", timeout_s=5
        )
    grandchild = grandchild_pid(tmp_path / "t.log")
    assert grandchild is not None
    assert not alive(grandchild)


def test_a_child_dies_with_its_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "sleeper.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    sleeper = int(owner.stdout.readline())
    assert alive(sleeper)
    owner.kill()
    owner.wait(timeout=30)
    owner.stdout.close()
    assert eventually(lambda: not alive(sleeper)), "the child outlived its owner"


def test_service_process_is_healthy_then_stopped(seeded_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    # The session's secrets, whatever the shell exported (a short JWT_SECRET would stop it).
    env = {**os.environ, **SETTINGS.secrets()}
    with ServiceProcess(seeded_dsn, "unified", tmp_path / "storage", log, env=env) as svc:
        assert svc.child is not None
        pid = svc.child.pid
        assert answers_200(f"{svc.url}/healthz")
    assert svc.child is None
    assert not alive(pid)
    assert log.read_text().startswith(f"$ {sys.executable} -m reference")


def test_only_progress_lines_are_echoed_the_rest_is_logged(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = "print('full table row'); print('....' + 'progress: 3/9 done'); print('another row')"
    log = tmp_path / "child.log"
    code, _ = run_child(
        [sys.executable, "-c", script], log_path=log, timeout_s=60, echo="  ", echo_only=PROGRESS
    )
    assert code == 0
    err = capfd.readouterr().err
    assert "  progress: 3/9 done" in err
    assert "row" not in err
    assert "full table row" in log.read_text()
