"""The provider chain's choice, and the throwaway cluster's life cycle."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fixtures.database import (
    CLUSTER_PREFIX,
    SERVER_TOOLS,
    DatabaseInfo,
    Environment,
    NoDatabaseAvailable,
    ProviderName,
    choose_provider,
    docker_engine_answers,
    find_bindir,
    pgserver_importable,
    probe_environment,
    provide_database,
    run_async,
)
from reference.db.pool import connect

BINDIR = Path("/usr/lib/postgresql/15/bin")


def env_with(**kw: object) -> Environment:
    base: dict[str, object] = {
        "database_url": None,
        "forced": None,
        "docker_available": False,
        "bindir": None,
        "pgserver_available": False,
    }
    base.update(kw)
    return Environment(**base)  # type: ignore[arg-type]


def test_database_url_wins_over_everything() -> None:
    e = env_with(
        database_url="postgresql://x@h/db",
        docker_available=True,
        bindir=BINDIR,
        pgserver_available=True,
    )
    assert choose_provider(e) is ProviderName.ENV


def test_docker_comes_before_local_binaries() -> None:
    e = env_with(docker_available=True, bindir=BINDIR, pgserver_available=True)
    assert choose_provider(e) is ProviderName.DOCKER


def test_docker_absent_falls_to_local_binaries() -> None:
    e = env_with(docker_available=False, bindir=BINDIR, pgserver_available=True)
    assert choose_provider(e) is ProviderName.LOCAL


def test_binaries_absent_falls_to_pgserver() -> None:
    assert choose_provider(env_with(pgserver_available=True)) is ProviderName.PGSERVER


def test_nothing_available_says_what_to_do() -> None:
    with pytest.raises(NoDatabaseAvailable, match="DATABASE_URL"):
        choose_provider(env_with())


def test_forced_provider_is_honoured_and_checked() -> None:
    e = env_with(docker_available=True, bindir=BINDIR, forced=ProviderName.LOCAL)
    assert choose_provider(e) is ProviderName.LOCAL
    with pytest.raises(NoDatabaseAvailable, match="pgserver"):
        choose_provider(env_with(bindir=BINDIR, forced=ProviderName.PGSERVER))


def test_probe_reads_database_url_without_probing_the_rest() -> None:
    probed = probe_environment({"DATABASE_URL": "postgresql://u@h/d", "PATH": ""})
    assert probed.database_url == "postgresql://u@h/d"
    assert probed.bindir is None
    assert not probed.docker_available


def test_probe_rejects_unknown_forced_provider() -> None:
    with pytest.raises(NoDatabaseAvailable, match="DB_PROVIDER"):
        probe_environment({"DB_PROVIDER": "oracle"})


def test_docker_absent_when_the_engine_does_not_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert docker_engine_answers({"DOCKER_HOST": f"tcp://127.0.0.1:{closed}"}) is False


def test_docker_absent_without_socket_or_host(tmp_path: Path) -> None:
    assert docker_engine_answers({"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}) is False


def test_docker_present_when_an_engine_answers_ping() -> None:
    class Ping(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"OK" if self.path == "/_ping" else b"no"
            self.send_response(200 if self.path == "/_ping" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ping) as engine:
        thread = threading.Thread(target=engine.serve_forever, daemon=True)
        thread.start()
        try:
            port = engine.server_address[1]
            assert docker_engine_answers({"DOCKER_HOST": f"tcp://127.0.0.1:{port}"}) is True
        finally:
            engine.shutdown()
            thread.join()


def _fake_bindir(root: Path, name: str, tools: tuple[str, ...] = SERVER_TOOLS) -> Path:
    bindir = root / name / "bin"
    bindir.mkdir(parents=True)
    for tool in tools:
        (bindir / tool).touch()
    return bindir


def test_bindir_absent_when_no_binaries(tmp_path: Path) -> None:
    incomplete = _fake_bindir(tmp_path, "15", tools=("initdb",))
    env = {"PATH": str(tmp_path), "PG_BINDIR": str(incomplete)}
    assert find_bindir(env, system_glob=str(tmp_path / "*" / "bin")) is None
    assert choose_provider(env_with(bindir=None, pgserver_available=True)) is ProviderName.PGSERVER


def test_bindir_prefers_explicit_then_newest_installed(tmp_path: Path) -> None:
    system = str(tmp_path / "*" / "bin")
    older, newer = _fake_bindir(tmp_path, "9"), _fake_bindir(tmp_path, "16")
    assert find_bindir({"PATH": ""}, system_glob=system) == newer
    assert find_bindir({"PATH": "", "PG_BINDIR": str(older)}, system_glob=system) == older


def test_session_database_reports_its_facts(database: DatabaseInfo) -> None:
    assert database.server_version[:2].isdigit()
    assert database.provider in set(ProviderName)
    described = database.describe()
    assert database.provider.label in described
    assert "PostgreSQL" in described


async def _count_rows(dsn: str) -> int:
    async with connect(dsn) as conn:
        return int(await conn.fetchval("select 1"))


@pytest.mark.skipif(find_bindir() is None, reason="needs the PostgreSQL server binaries")
def test_local_cluster_is_removed_on_exception() -> None:
    local = {"DB_PROVIDER": "local", "PATH": os.environ["PATH"]}
    with pytest.raises(RuntimeError, match="boom"), provide_database(local) as info:  # noqa: PT012
        assert Path(info.directory).name.startswith(CLUSTER_PREFIX)
        assert run_async(_count_rows(info.dsn)) == 1
        raise RuntimeError("boom")
    assert not Path(info.directory).exists()
    with pytest.raises(OSError):  # noqa: PT011
        run_async(_count_rows(info.dsn))


SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    # A shell's Ctrl-C: the child may inherit SIGINT ignored from the test runner.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from fixtures.database import provide_database
    with provide_database({"DB_PROVIDER": "local", "PATH": %r}) as info:
        print(info.dsn.rsplit(":", 1)[1].split("/")[0], info.directory, flush=True)
        time.sleep(60)
    """
)


@pytest.mark.skipif(find_bindir() is None, reason="needs the PostgreSQL server binaries")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_local_cluster_stops_when_its_owner_is_interrupted(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT % os.environ["PATH"]], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port, directory = proc.stdout.readline().split()
    assert port.isdigit()
    assert Path(directory).is_dir()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    proc.stdout.close()
    isready = str(find_bindir() / "pg_isready")  # type: ignore[operator]
    deadline_ok = False
    for _ in range(100):
        if (
            subprocess.run([isready, "-q", "-h", "127.0.0.1", "-p", port], check=False).returncode
            == 2
        ):
            deadline_ok = True
            break
        time.sleep(0.1)
    assert deadline_ok, "postgres still accepting connections after its owner died"
    if sig is signal.SIGKILL:
        from fixtures.database import reap_stale_clusters

        reap_stale_clusters()
    assert not Path(directory).exists()


@pytest.mark.slow
@pytest.mark.skipif(not pgserver_importable(), reason="pgserver is not installed")
def test_pgserver_provider_runs_every_migration_without_pg_trgm() -> None:
    from reference.db.migrate import discover, migrate

    with provide_database({"DB_PROVIDER": "pgserver", "PATH": os.environ["PATH"]}) as info:
        assert info.provider is ProviderName.PGSERVER
        assert info.has_pg_trgm is False
        assert run_async(migrate(info.dsn)) == [m.version for m in discover()]
        directory = Path(info.directory)
        assert directory.is_dir()
    assert not directory.exists()
