"""Regressions judged A/B: the baseline commit and the head measured in one run, interleaved.

Figures taken at different times under different machine load are not comparable, whatever the
test statistic says. So, as asv's ``continuous`` does, the baseline commit is checked out in a
separate worktree and both trees run the same benchmarks against the same database, alternating
(base, head, head, base, ...) so that a drift of the machine's load falls on both sides alike.

Each benchmark's slowdown is the ratio of the head's median to the base's, with a 95% interval
from a two-level bootstrap: the runs of each side are resampled, then the rounds within each run,
so a benchmark whose speed differs from one process to the next (bimodal sub-millisecond index
lookups) gets the wide interval it deserves instead of a confident false alarm. The verdict is
the targets' three-valued rule on that interval against ``1 + tolerance``: a *regression* when the
whole interval lies above it, *ok* when the whole interval lies below it (*improved* when below
``1 - tolerance`` too), *inconclusive* otherwise. Inconclusive benchmarks are measured again,
in one more pair of runs, within the time budget.

A regression must then be seen again. Dozens of benchmarks are judged at 95% each, and a whole run
can sit apart from the others (unchanged code once measured 1.29x [1.17, 1.45] slower on one
benchmark), so the files of the flagged benchmarks run in fresh pairs, and a regression stands
only when those new runs alone find the head slower (interval above 1) by more than the
tolerance (median ratio). A chance alarm is unlikely to repeat; a real slowdown does. The
interval is what tells them apart on a noisy benchmark: asking only for a median ratio above
1 + tolerance/2 confirmed a false alarm in CI on unchanged code (test_sql_over_http, 1.34
[1.11, 1.61], again 1.11 [0.76, 1.41]). The price: a slowdown of a noisy benchmark can go
unconfirmed (a 30% one injected, 1.26 [1.16, 1.34], again 1.10 [0.94, 1.27]), reported as
inconclusive rather than failing CI.

The machine's load average is read around every run; a run taken while other work kept the
cores busy is flagged in the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np

from reports.figures import ROOT, read_json, rounds
from reports.uncertainty import CONFIDENCE, RESAMPLES, SEED, Estimate

#: A test-only hook: every timed duration of the head's benchmarks is this much longer (0.2:
#: 20% slower). ``make gate-selftest`` uses it to prove the gate catches a known slowdown.
SLOWDOWN_ENV: Final = "WSBENCH_INJECT_SLOWDOWN"
#: Load average per core above which a run counts as taken under outside load.
BUSY_LOAD_PER_CORE: Final = 1.5

Runs = Sequence[Sequence[float]]


class AbVerdict(StrEnum):
    OK = "ok"
    IMPROVED = "improved"
    REGRESSION = "REGRESSION"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"


@dataclass
class SideRuns:
    """Every run of one side: per benchmark full name, the rounds of each run."""

    rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)
    last_json: dict[str, Any] = field(default_factory=dict)

    def add(self, bench_json: Mapping[str, Any], load_per_core: float) -> None:
        self.loads.append(load_per_core)
        self.last_json = dict(bench_json)
        for bench in bench_json.get("benchmarks") or []:
            data = rounds(bench)
            if data:
                name = str(bench["fullname"])
                self.rounds.setdefault(name, []).append(data)
                self.groups[name] = str(bench.get("group") or "")


@dataclass(frozen=True)
class AbComparison:
    benchmark: str
    group: str
    base_median: float
    head_median: float
    ratio: Estimate
    tolerance: float
    verdict: AbVerdict
    #: The ratio in the fresh pairs that re-measured a regression (None: not re-measured).
    confirmation: Estimate | None = None

    def as_dict(self) -> dict[str, Any]:
        again = self.confirmation
        return {
            "benchmark": self.benchmark,
            "group": self.group,
            "base_median_s": self.base_median,
            "head_median_s": self.head_median,
            "ratio": self.ratio.value,
            "ratio_low": self.ratio.low,
            "ratio_high": self.ratio.high,
            "runs": self.ratio.n,
            "tolerance": self.tolerance,
            "verdict": self.verdict.value,
            "confirmation": None
            if again is None
            else {"ratio": again.value, "ratio_low": again.low, "ratio_high": again.high},
        }


def hierarchical_ratio(base: Runs, head: Runs) -> Estimate:
    """median(head) / median(base) over every round, with a two-level bootstrap interval."""
    rng = np.random.default_rng(SEED)

    def resampled_medians(runs: Runs) -> np.ndarray[Any, Any]:
        arrays = [np.asarray(r, dtype=np.float64) for r in runs]
        medians = np.empty(RESAMPLES)
        picks = rng.integers(0, len(arrays), size=(RESAMPLES, len(arrays)))
        for i in range(RESAMPLES):
            chosen = [arrays[j] for j in picks[i]]
            pooled = np.concatenate([a[rng.integers(0, len(a), size=len(a))] for a in chosen])
            medians[i] = np.median(pooled)
        return medians

    value = float(np.median(np.concatenate(head)) / np.median(np.concatenate(base)))
    samples = resampled_medians(head) / resampled_medians(base)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = (float(x) for x in np.percentile(samples, [tail, 100 - tail]))
    return Estimate(value, min(low, value), max(high, value), min(len(base), len(head)))


def judge_ratio(ratio: Estimate, tolerance: float) -> AbVerdict:
    bound = 1.0 + tolerance
    if ratio.low > bound:
        return AbVerdict.REGRESSION
    if ratio.high < 1.0 - tolerance:
        return AbVerdict.IMPROVED
    if ratio.high < bound:
        return AbVerdict.OK
    return AbVerdict.INCONCLUSIVE


def compare(
    base: SideRuns, head: SideRuns, tolerance_for: Callable[[str], float]
) -> list[AbComparison]:
    """Each benchmark of the head against the base, judged at its group's tolerance."""
    found = []
    for name, head_runs in sorted(head.rounds.items()):
        base_runs = base.rounds.get(name)
        group = head.groups.get(name, "")
        tolerance = tolerance_for(group)
        head_median = float(np.median(np.concatenate(head_runs)))
        if not base_runs:
            exact = Estimate.exact(math.nan, 0)
            found.append(
                AbComparison(name, group, math.nan, head_median, exact, tolerance, AbVerdict.NEW)
            )
            continue
        ratio = hierarchical_ratio(base_runs, head_runs)
        base_median = float(np.median(np.concatenate(base_runs)))
        found.append(
            AbComparison(
                name,
                group,
                base_median,
                head_median,
                ratio,
                tolerance,
                judge_ratio(ratio, tolerance),
            )
        )
    return found


def confirm(
    comparisons: Sequence[AbComparison], base: SideRuns, head: SideRuns
) -> list[AbComparison]:
    """Each regression judged again on fresh runs alone: it stands when they find the head
    slower (interval above 1) by more than the tolerance (median ratio); otherwise it is
    inconclusive. A regression whose benchmark has no fresh runs (they failed, or the budget ran
    out) keeps its first verdict."""
    judged = []
    for c in comparisons:
        base_runs, head_runs = base.rounds.get(c.benchmark), head.rounds.get(c.benchmark)
        if c.verdict is not AbVerdict.REGRESSION or not base_runs or not head_runs:
            judged.append(c)
            continue
        again = hierarchical_ratio(base_runs, head_runs)
        held = again.low > 1.0 and again.value > 1.0 + c.tolerance
        verdict = AbVerdict.REGRESSION if held else AbVerdict.INCONCLUSIVE
        judged.append(dataclasses.replace(c, confirmation=again, verdict=verdict))
    return judged


def load_per_core() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1)


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """The commit ``rev`` checked out, detached, in a temporary worktree of this repository."""
    with tempfile.TemporaryDirectory(prefix="wsbench-base-") as tmp:
        path = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--quiet", "--detach", str(path), rev],
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=ROOT,
                check=False,
                timeout=120,
            )


def run_side(
    tree: Path,
    out: Path,
    pytest_args: Sequence[str],
    env: Mapping[str, str],
    timeout_s: float,
) -> tuple[dict[str, Any] | None, float]:
    """One benchmark run of one tree: its JSON (None when it failed) and the load around it."""
    out.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
        "-p", "no:randomly", f"--benchmark-json={out}", *pytest_args,
    ]  # fmt: skip
    before = load_per_core()
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=tree, env={**env, "PYTHONPATH": str(tree)}, check=False, timeout=timeout_s,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    after = load_per_core()
    print(
        f"gate: {tree.name} run done in {time.monotonic() - started:.0f} s "
        f"(load {max(before, after):.2f} per core)",
        flush=True,
    )
    if result.returncode != 0 or not out.exists():
        return None, max(before, after)
    return read_json(out), max(before, after)


@dataclass
class AbResult:
    base_rev: str
    comparisons: list[AbComparison]
    base_loads: list[float]
    head_loads: list[float]
    head_json: dict[str, Any]
    #: Why the base could not be measured (its benchmarks fail, or it has none): the head is
    #: then judged on its targets alone, since a broken base says nothing about the head.
    base_failed: str = ""

    @property
    def regressions(self) -> list[AbComparison]:
        return [c for c in self.comparisons if c.verdict is AbVerdict.REGRESSION]

    @property
    def inconclusive(self) -> list[AbComparison]:
        return [c for c in self.comparisons if c.verdict is AbVerdict.INCONCLUSIVE]

    @property
    def busy(self) -> bool:
        return max([*self.base_loads, *self.head_loads, 0.0]) > BUSY_LOAD_PER_CORE

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base_rev,
            "base_failed": self.base_failed,
            "busy": self.busy,
            "base_loads": self.base_loads,
            "head_loads": self.head_loads,
            "comparisons": [c.as_dict() for c in self.comparisons],
        }


def measure(
    base_rev: str,
    out_dir: Path,
    pytest_args: Sequence[str],
    env: Mapping[str, str],
    *,
    pairs: int,
    tolerance_for: Callable[[str], float],
    budget_s: float,
    head_env: Mapping[str, str] | None = None,
    confirm_pairs: int = 2,
) -> AbResult | None:
    """Run base and head ``pairs`` times each, alternating; one more pair for the inconclusive
    while the budget lasts; then ``confirm_pairs`` fresh pairs for the regressions, which stand
    only if those see them again (:func:`confirm`). None when a run of the head failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base, head = SideRuns(), SideRuns()
    deadline = time.monotonic() + budget_s
    with worktree(base_rev) as base_tree:
        trees = {"base": (base_tree, env), "head": (ROOT, {**env, **(head_env or {})})}
        sides = {"base": base, "head": head}

        def one(name: str, label: str, args: Sequence[str], into: SideRuns) -> bool:
            tree, side_env = trees[name]
            left = max(60.0, deadline - time.monotonic())
            found, load = run_side(
                tree, out_dir / f"{name}-{label}.json", args, side_env, timeout_s=left
            )
            if found is None:
                return False
            into.add(found, load)
            return True

        def order(index: int) -> tuple[str, str]:
            """Which side runs first in the pair ``index``: they alternate, pair after pair."""
            return ("base", "head") if index % 2 == 0 else ("head", "base")

        def files(comparisons: Sequence[AbComparison], verdict: AbVerdict) -> list[str]:
            return sorted(
                {c.benchmark.split("::", 1)[0] for c in comparisons if c.verdict is verdict}
            )

        for i in range(pairs):
            for name in order(i):
                if one(name, str(i), pytest_args, sides[name]):
                    continue
                if name == "head":
                    return None
                if not one("head", str(i), pytest_args, head):
                    return None
                why = f"the benchmarks of {base_rev} failed to run"
                print(f"gate: {why}: judging the head on its targets alone", flush=True)
                return AbResult(base_rev, [], base.loads, head.loads, head.last_json, why)
        comparisons = compare(base, head, tolerance_for)
        again = files(comparisons, AbVerdict.INCONCLUSIVE)
        if again and time.monotonic() < deadline:
            print(f"gate: inconclusive benchmarks in {', '.join(again)}: one more pair", flush=True)
            for name in order(pairs):
                if not one(name, str(pairs), [*again, *pytest_args], sides[name]):
                    break
            comparisons = compare(base, head, tolerance_for)
        flagged = files(comparisons, AbVerdict.REGRESSION)
        if flagged and confirm_pairs > 0 and time.monotonic() < deadline:
            print(
                f"gate: regressions in {', '.join(flagged)}: {confirm_pairs} fresh pair(s) "
                "must see them again",
                flush=True,
            )
            fresh = {"base": SideRuns(), "head": SideRuns()}
            for i in range(confirm_pairs):
                label = f"confirm{i}"
                if not all(one(n, label, [*flagged, *pytest_args], fresh[n]) for n in order(i)):
                    break
            comparisons = confirm(comparisons, fresh["base"], fresh["head"])
    return AbResult(base_rev, comparisons, base.loads, head.loads, head.last_json)


def format_table(result: AbResult) -> str:
    rows = [("benchmark", "base", "head", "ratio", "95% interval", "runs", "again", "verdict")]
    for c in result.comparisons:
        short = c.benchmark.split("::", 1)[-1]
        if c.verdict is AbVerdict.NEW:
            rows.append((short, "-", f"{c.head_median * 1e3:.3f} ms", "-", "-", "-", "-", "new"))
            continue
        rows.append(
            (
                short,
                f"{c.base_median * 1e3:.3f} ms",
                f"{c.head_median * 1e3:.3f} ms",
                f"{c.ratio.value:.3f}",
                f"[{c.ratio.low:.3f}, {c.ratio.high:.3f}]",
                str(c.ratio.n),
                "-"
                if c.confirmation is None
                else f"{c.confirmation.value:.3f} [{c.confirmation.low:.3f}, "
                f"{c.confirmation.high:.3f}]",
                c.verdict.value,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if result.busy:
        lines.append(
            "note: outside load during the measurement (load average above "
            f"{BUSY_LOAD_PER_CORE} per core): read the verdicts with care"
        )
    return "\n".join(lines)


def write(result: AbResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
