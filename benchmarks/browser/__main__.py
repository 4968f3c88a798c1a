"""``python -m benchmarks.browser``: the browser step alone, on its own database.

A database from the provider chain (``DATABASE_URL`` first), the ``SCALE`` dataset with its
stored files, then :func:`benchmarks.browser.step.run_browser_step`; prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from benchmarks.browser.step import BrowserSettings, run_browser_step

ROOT = Path(__file__).resolve().parent.parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser", description=__doc__)
    parser.add_argument("--scale", default=os.environ.get("SCALE", "plan"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "out")
    parser.add_argument("--no-mobile", action="store_true")
    parser.add_argument("--no-filmstrip", action="store_true")
    args = parser.parse_args(argv)

    from fixtures.database import provide_database
    from loadtests._service import prepare

    storage_dir = Path(os.environ.get("STORAGE_DIR") or ROOT / ".data" / "storage")
    settings = BrowserSettings(
        rounds=args.rounds, mobile=not args.no_mobile, filmstrip=not args.no_filmstrip
    )
    with provide_database() as info:
        asyncio.run(prepare(info.dsn, args.scale, storage_dir))
        result = run_browser_step(info.dsn, storage_dir, args.scale, args.out, settings=settings)
    print(json.dumps(result["figures"], indent=2, sort_keys=True))
    meta = result["meta"]
    if not meta.get("measured"):
        print(f"not measured: {meta.get('reason')}", file=sys.stderr)
        return 1
    print(f"browser step: {meta['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
