"""``python -m benchmarks.browser``: the browser step, on its own database or on ``--dsn``.

Without ``--dsn``: a database from the provider chain (``DATABASE_URL`` first) and the ``SCALE``
dataset with its stored files. Then :func:`benchmarks.browser.step.run_browser_step`, which
writes ``OUT/figures/browser.json``; prints the figures. ``make bench`` runs it with ``--dsn``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

from benchmarks.browser.step import BrowserSettings, run_browser_step

ROOT = Path(__file__).resolve().parent.parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser", description=__doc__)
    parser.add_argument("--scale", default=os.environ.get("SCALE", "plan"))
    parser.add_argument("--rounds", type=int, help="default: BROWSER_ROUNDS, else 3")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "out")
    parser.add_argument(
        "--profile", choices=("full", "quick"), help="default: BROWSER_PROFILE, else quick at tiny"
    )
    parser.add_argument("--no-mobile", action="store_true")
    parser.add_argument("--no-filmstrip", action="store_true")
    parser.add_argument("--dsn", help="a database already loaded with the SCALE dataset")
    args = parser.parse_args(argv)

    from fixtures.database import provide_database
    from fixtures.prepare import ensure_dataset
    from fixtures.spec import spec_for
    from reference.settings import child_secrets

    storage_dir = Path(os.environ.get("STORAGE_DIR") or ROOT / ".data" / "storage")
    env_in = {**os.environ, **({"BROWSER_PROFILE": args.profile} if args.profile else {})}
    settings = BrowserSettings.from_env(env_in, args.scale)
    if args.no_mobile:
        settings = dataclasses.replace(settings, mobile=False)
    if args.no_filmstrip:
        settings = dataclasses.replace(settings, filmstrip=False)
    if args.rounds is not None:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    # The services it starts and the token it signs share one set of secrets.
    env = {**os.environ, **child_secrets()}
    with contextlib.ExitStack() as stack:
        dsn = args.dsn
        if dsn is None:
            dsn = stack.enter_context(provide_database()).dsn
            asyncio.run(ensure_dataset(dsn, spec_for(args.scale), storage_dir))
        result = run_browser_step(
            dsn, storage_dir, args.scale, args.out, settings=settings, env=env
        )
    print(json.dumps(result["figures"], indent=2, sort_keys=True))
    meta = result["meta"]
    if not meta.get("measured"):
        print(f"not measured: {meta.get('reason')}", file=sys.stderr)
        return 1
    print(f"browser step: {meta['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
