"""``python -m loadtests``: database, data, the service in its own process, then Locust.

    python -m loadtests                        # headless, defaults from loadtests/locust.conf
    python -m loadtests --modes unified,legacy # one run per URL mode (legacy -> load_legacy.*)
    python -m loadtests --ui                   # Locust's web UI on 127.0.0.1:8089
    python -m loadtests --ramp                 # step users up until a threshold breaks
    python -m loadtests --processes 2          # Locust master + workers on more than one core
    python -m loadtests --host https://staging.example  # any deployment (LOAD_TOKENS=file)
    python -m loadtests -- --users 50          # anything after -- goes to Locust as is

Locust itself (and its gevent monkey-patching) only ever runs in a child process; LOCUST_*
environment variables reach it unchanged and override locust.conf.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from fixtures.database import free_port, provide_database
from fixtures.generate import SCALES, spec_for
from fixtures.prepare import prepare_dataset, say
from loadtests._config import REPO, LoadSettings, fixture_identities, write_tokens
from reference.migrate import migrate

CONFIG: Final = REPO / "loadtests" / "locust.conf"
SHAPES: Final = REPO / "loadtests" / "_shapes.py"
HAS_ASSETS: Final = (
    "select to_regclass('images') is not null and exists (select 1 from images limit 1)"
)
READY_TIMEOUT_S: Final = 120.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="measure this deployment instead of a local service")
    parser.add_argument("--scale", default=os.environ.get("SCALE", "plan"), choices=sorted(SCALES))
    parser.add_argument(
        "--modes",
        default=os.environ.get("URL_MODE", "unified"),
        help="URL modes to run, comma-separated (unified, legacy)",
    )
    parser.add_argument("--ui", action="store_true", help="Locust's web UI instead of headless")
    parser.add_argument("--ramp", action="store_true", help="use the ramp load shape")
    parser.add_argument("--processes", type=int, default=0, help="Locust worker processes")
    parser.add_argument("locust_args", nargs=argparse.REMAINDER, help="-- then Locust options")
    return parser


async def _prepare(dsn: str, scale: str, storage_dir: Path) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        loaded = await conn.fetchval(HAS_ASSETS)
    finally:
        await conn.close()
    if loaded:
        say("database already holds assets: applying pending migrations only")
        await migrate(dsn)
    else:
        await prepare_dataset(dsn, spec_for(scale))
    await _write_storage_objects(dsn, storage_dir)


async def _write_storage_objects(dsn: str, storage_dir: Path) -> None:
    """The files behind the signed URLs (fixtures.storage_files, when this checkout has it)."""
    try:
        module = importlib.import_module("fixtures.storage_files")
    except ImportError:
        say("fixtures.storage_files is missing: signed objects will answer 404")
        return
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        report = await module.write_storage_objects(conn, storage_dir, progress=True)
    finally:
        await conn.close()
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
def service(dsn: str, mode: str, storage_dir: Path) -> Iterator[str]:
    """``python -m reference`` in its own process; yields its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "URL_MODE": mode,
        "STORAGE_DIR": str(storage_dir),
    }
    process = subprocess.Popen([sys.executable, "-m", "reference"], env=env, cwd=REPO)
    try:
        wait_ready(base_url, process)
        say(f"service ({mode} URLs) at {base_url}, pid {process.pid}")
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def locust_command(args: argparse.Namespace, host: str, prefix: str, out: Path) -> list[str]:
    locustfile = f"{REPO / 'loadtests'},{SHAPES}" if args.ramp else str(REPO / "loadtests")
    command = [sys.executable, "-m", "locust", "--config", str(CONFIG), "-f", locustfile]
    command += ["--host", host, "--csv", str(out / prefix)]
    if args.ui:
        command += ["--web-host", "127.0.0.1", "--web-port", "8089"]
    else:
        command += ["--headless"]
    if args.processes:
        command += ["--processes", str(args.processes)]
    extra = list(args.locust_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return command + extra


def run_locust(args: argparse.Namespace, host: str, mode: str, tokens: Path | None) -> int:
    env = {**os.environ, "URL_MODE": mode, "SCALE": args.scale}
    if tokens is not None:
        env["LOAD_TOKENS"] = str(tokens)
    settings = LoadSettings.from_env(env)
    command = locust_command(args, host, settings.figure_prefix, settings.out_dir)
    say(" ".join(command))
    process = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if invalid := [m for m in modes if m not in ("unified", "legacy")]:
        raise SystemExit(f"unknown URL mode(s): {', '.join(invalid)}")
    settings = LoadSettings.from_env()
    (settings.out_dir / "figures" / "load.json").unlink(missing_ok=True)
    if args.host:
        tokens = settings.tokens_file
        if tokens is None:
            say("LOAD_TOKENS is not set: signing fixture users' tokens with JWT_SECRET")
        return run_locust(args, args.host, modes[0], tokens)

    storage_dir = Path(os.environ.get("STORAGE_DIR", str(REPO / ".data" / "storage")))
    tokens = settings.out_dir / "load_tokens.json"
    write_tokens(tokens, fixture_identities(args.scale, settings.heavy_weight))
    codes: dict[str, int] = {}
    with provide_database() as info:
        say(info.describe())
        asyncio.run(_prepare(info.dsn, args.scale, storage_dir))
        for mode in modes:
            with service(info.dsn, mode, storage_dir) as base_url:
                codes[mode] = run_locust(args, base_url, mode, tokens)
    for mode, code in codes.items():
        say(f"{mode}: locust exit code {code}")
    # The legacy baseline is measured, not gated: the verdict is the unified run's.
    return codes.get("unified", next(iter(codes.values())))


if __name__ == "__main__":
    sys.exit(main())
