"""``python -m loadtests``: database, data, the service in its own process, then Locust.

    python -m loadtests                        # headless, defaults from loadtests/locust.conf
    python -m loadtests --modes unified,legacy # one run per URL mode (legacy -> load_legacy.*)
    python -m loadtests --ui                   # Locust's web UI on 127.0.0.1:8089
    python -m loadtests --ramp                 # step users up until a threshold breaks
    python -m loadtests --processes 0          # one Locust process (default: one worker per core)
    python -m loadtests --host https://staging.example  # any deployment (LOAD_TOKENS=file)
    python -m loadtests -- --users 50          # anything after -- goes to Locust as is

Locust itself (and its gevent monkey-patching) only ever runs in a child process; LOCUST_*
environment variables reach it unchanged and override locust.conf. The service's and Locust's
output is kept in ``LOAD_OUT/logs/`` (Locust's is echoed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Final

from fixtures.database import provide_database
from fixtures.prepare import ensure_dataset
from fixtures.processes import ServiceProcess, say, start_child
from fixtures.spec import SCALES, spec_for
from loadtests._config import REPO, LoadSettings, fixture_identities, write_tokens
from reference.settings import child_secrets

CONFIG: Final = REPO / "loadtests" / "locust.conf"
SHAPES: Final = REPO / "loadtests" / "_shapes.py"


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
    parser.add_argument(
        "--processes",
        type=int,
        default=int(os.environ.get("LOAD_PROCESSES", "-1")),
        help="Locust worker processes (-1: one per core; 0: no workers, one process)",
    )
    parser.add_argument("locust_args", nargs=argparse.REMAINDER, help="-- then Locust options")
    return parser


def locust_command(args: argparse.Namespace, host: str) -> list[str]:
    locustfile = f"{REPO / 'loadtests'},{SHAPES}" if args.ramp else str(REPO / "loadtests")
    command = [sys.executable, "-m", "locust", "--config", str(CONFIG), "-f", locustfile]
    # No --csv: Locust closes its CSV files while the writer greenlet may still run (an
    # "I/O operation on closed file" traceback at every stop); our figures come from the exact
    # histograms, and `-- --csv PREFIX` still asks Locust for its files.
    command += ["--host", host]
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
    command = locust_command(args, host)
    say(" ".join(command))
    log_path = settings.out_dir / "logs" / f"locust-{mode}.log"
    locust = start_child(command, log_path=log_path, env=env, cwd=REPO, echo="")
    try:
        return locust.wait()
    finally:
        # Ctrl-C, SIGTERM (SystemExit) or any error here: Locust must not outlive its runner.
        locust.stop()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if invalid := [m for m in modes if m not in ("unified", "legacy")]:
        parser.error(f"unknown URL mode(s): {', '.join(invalid)}")
    settings = LoadSettings.from_env()
    (settings.out_dir / "figures" / "load.json").unlink(missing_ok=True)
    shutil.rmtree(settings.out_dir / "workers", ignore_errors=True)
    if args.host:
        tokens = settings.tokens_file
        if tokens is None:
            say("LOAD_TOKENS is not set: signing fixture users' tokens with JWT_SECRET")
        return run_locust(args, args.host, modes[0], tokens)

    storage_dir = Path(os.environ.get("STORAGE_DIR", str(REPO / ".data" / "storage")))
    # Generated once when unset: the service signs with them and the tokens are signed with them.
    secrets = child_secrets()
    tokens = settings.out_dir / "load_tokens.json"
    write_tokens(tokens, fixture_identities(args.scale, settings.heavy_weight, secrets))
    codes: dict[str, int] = {}
    with provide_database() as info:
        say(info.describe())
        asyncio.run(ensure_dataset(info.dsn, spec_for(args.scale), storage_dir))
        for mode in modes:
            log_path = settings.out_dir / "logs" / f"service-{mode}.log"
            env = {**os.environ, **secrets}
            with ServiceProcess(info.dsn, mode, storage_dir, log_path, env=env) as service:
                say(f"service ({mode} URLs) at {service.url}")
                codes[mode] = run_locust(args, service.url, mode, tokens)
    for mode, code in codes.items():
        say(f"{mode}: locust exit code {code}")
    # The legacy baseline is measured, not gated: the verdict is the unified run's.
    return codes.get("unified", next(iter(codes.values())))


if __name__ == "__main__":
    sys.exit(main())
