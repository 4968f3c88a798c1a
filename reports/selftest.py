"""The gate proves itself: no false alarm on unchanged code, and a known slowdown caught.

    python -m reports.selftest                  # make gate-selftest
    python -m reports.selftest --runs 5 --slowdown 0.2 -- -k url_generation

Runs the A/B gate (:mod:`reports.ab`) ``--runs`` times with the committed ``HEAD`` as the base
and the unchanged tree as the head, then once more with every timed duration of the head made
``--slowdown`` longer through the benchmarks' test-only hook. Prints, per run, the benchmarks
compared and their verdicts; then the false alarms (runs on unchanged code that found a
regression: must be 0) and whether the slowdown was caught (must be yes). Exit 0 when both hold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from reports.ab import SLOWDOWN_ENV
from reports.figures import FIGURES_DIR, ROOT

DEFAULT_SELECT: Final = ("-k", "url_generation")


def gate_once(pytest_args: list[str], pairs: int, env: Mapping[str, str]) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "reports.gate", "--base", "HEAD", "--no-record",
        "--pairs", str(pairs), "--", *pytest_args,
    ]  # fmt: skip
    ab_json = FIGURES_DIR / "ab.json"
    ab_json.unlink(missing_ok=True)
    subprocess.run(command, cwd=ROOT, env=dict(env), check=False, stdout=subprocess.DEVNULL)
    if not ab_json.exists():
        raise SystemExit("selftest: the gate wrote no ab.json (see `make gate` for why)")
    data: dict[str, Any] = json.loads(ab_json.read_text(encoding="utf-8"))
    return data


def verdicts(result: Mapping[str, Any]) -> Counter[str]:
    return Counter(str(c["verdict"]) for c in result.get("comparisons", []))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.selftest", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="gate runs on unchanged code")
    parser.add_argument("--slowdown", type=float, default=0.2, help="the injected slowdown")
    parser.add_argument("--pairs", type=int, default=2, help="A/B runs of each side")
    parser.add_argument("pytest_args", nargs="*", help="benchmark selection (after --)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    selection = list(args.pytest_args) or list(DEFAULT_SELECT)
    env = {k: v for k, v in os.environ.items() if k != SLOWDOWN_ENV}
    env.setdefault("SCALE", "tiny")

    rows = []
    started = time.monotonic()
    for i in range(args.runs):
        print(f"selftest: gate {i + 1} of {args.runs} on unchanged code ...", flush=True)
        rows.append(("unchanged", verdicts(gate_once(selection, args.pairs, env))))
    print(f"selftest: gate with a {args.slowdown:.0%} slowdown injected ...", flush=True)
    injected = {**env, SLOWDOWN_ENV: str(args.slowdown)}
    rows.append((f"+{args.slowdown:.0%}", verdicts(gate_once(selection, args.pairs, injected))))

    names = ["ok", "improved", "inconclusive", "REGRESSION"]
    print(f"\n{'run':<4} {'code':<10} " + " ".join(f"{n:>12}" for n in names))
    for i, (label, counts) in enumerate(rows, 1):
        print(f"{i:<4} {label:<10} " + " ".join(f"{counts.get(n, 0):>12}" for n in names))
    false_alarms = sum(1 for label, c in rows[:-1] if c.get("REGRESSION", 0))
    flagged = rows[-1][1].get("REGRESSION", 0)
    compared = sum(rows[-1][1].values()) - rows[-1][1].get("new", 0)
    caught = flagged > 0
    print(
        f"\nfalse alarms: {false_alarms} of {args.runs} runs on unchanged code (must be 0)\n"
        f"slowdown of {args.slowdown:.0%} caught: {'yes' if caught else 'no'} "
        f"({flagged} of {compared} benchmarks flagged)\n"
        f"selftest took {time.monotonic() - started:.0f} s ({' '.join(selection)})"
    )
    return 0 if false_alarms == 0 and caught else 1


if __name__ == "__main__":
    sys.exit(main())
