"""``wsbench``: every entry point of the harness as one command; the Makefile's targets call it.

Options after the subcommand are the subcommand's own (``wsbench gate --help``). ``make`` turns
any failing recipe into exit code 2: scripts and CI that need the exact code call
``.venv/bin/wsbench`` directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from fixtures.processes import ROOT


@dataclass(frozen=True)
class Command:
    summary: str
    exit_codes: str
    run: Callable[[list[str]], int]


def _takes_no_arguments(name: str, doc: str | None, args: list[str]) -> None:
    """``--help`` prints ``doc``; anything else is a usage error (exit 2)."""
    parser = argparse.ArgumentParser(
        prog=f"wsbench {name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(args)


def _bench(args: list[str]) -> int:
    from reports import bench

    _takes_no_arguments("bench", bench.__doc__, args)
    return bench.main(os.environ)


def _gate(args: list[str]) -> int:
    from reports import gate

    return gate.main(args)


def _load(args: list[str]) -> int:
    # Locust's gevent monkey-patching must never reach this interpreter, so the load runner is a
    # program of its own that replaces this one (same pid, signals and exit code).
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(  # noqa: S606 (our own interpreter, no shell)
        sys.executable,
        [sys.executable, "-m", "loadtests", *args],
        {**os.environ, "PYTHONPATH": path},
    )


def _serve(args: list[str]) -> int:
    from fixtures import serve

    _takes_no_arguments("serve", serve.__doc__, args)
    return serve.main()


def _data(args: list[str]) -> int:
    from fixtures.__main__ import main

    return main(["up", *args])


COMMANDS: Final = {
    "bench": Command(
        "database, data, benchmarks, load in both URL modes, HTML report (make bench)",
        "0 every plan target holds and every step ran; 1 a target failed or was not measured, "
        "or a step failed; 2 bad settings",
        _bench,
    ),
    "gate": Command(
        "benchmarks, same-run targets, regressions against the history's baseline (make gate)",
        "0 pass; 1 a target missed; 2 a regression; 3 could not measure (the worst wins)",
        _gate,
    ),
    "load": Command(
        "database, data, the service and Locust, headless or --ui (make load, make load-ui)",
        "0 every threshold held; 1 a threshold breached; 2 usage; 3 no requests were made",
        _load,
    ),
    "serve": Command(
        "database, data (if empty), stored files, then the service until Ctrl-C (make serve)",
        "0 stopped with Ctrl-C; otherwise the service's own exit code",
        _serve,
    ),
    "data": Command(
        "database, migrate, load the SCALE dataset, report, tear down (make data)",
        "0 loaded; 1 an error (its traceback says which)",
        _data,
    ),
}


def _parser() -> argparse.ArgumentParser:
    rows = "\n".join(
        f"  {name:<6} {command.summary}\n         exit: {command.exit_codes}"
        for name, command in COMMANDS.items()
    )
    parser = argparse.ArgumentParser(
        prog="wsbench",
        description=__doc__,
        epilog=f"commands:\n{rows}\n\nwsbench itself exits 2 on a usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"wsbench {{{','.join(COMMANDS)}}} [options of the command]",
    )
    parser.add_argument("command", choices=COMMANDS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Only the first word is ours: the rest, --help included, belongs to the command.
    chosen = _parser().parse_args(args[:1]).command
    return COMMANDS[chosen].run(args[1:])


if __name__ == "__main__":
    sys.exit(main())
