"""The regression gate: targets from one benchmark run, and every benchmark against a baseline.

    python -m reports.gate                      # run the benchmarks, then judge them
    python -m reports.gate --json RUN.json      # judge a pytest-benchmark JSON already written

Targets: the before/after claims are judged on ratios measured in the same run (``saving.*``,
``speedup.*`` from ``reports/figures.py``), so a slower or busier machine moves both sides alike.
Regressions (``reports/regression.py``): each benchmark's raw rounds are compared with the
baseline's; a slowdown counts only when a low quantile of the rounds (``quantile``, p10) moved by
more than the group's tolerance AND a one-sided Mann-Whitney U test on the rounds is significant
at ``alpha`` (all from ``[gate]`` in ``benchmarks/targets.toml``). Contention on a shared machine
only adds time, to some rounds: it moves the median and makes the test significant, but leaves
the fastest rounds nearly where they were; a real regression moves every round.

Every gate run appends its line to the history (``reports/history.py``, ``HISTORY_FILE``; the
same file ``make bench`` appends to): its figures, each benchmark's raw rounds and the outcome of
this check. The baseline is the most recent comparable line (same machine fingerprint and scale)
that passed its regression check and has raw rounds; ``GATE_BASELINE`` (or ``--baseline``) pins one
instead: a line number of the history file or a commit (prefix). A missing baseline is not an
error: the gate says so, and its own line becomes the next run's baseline.

The fingerprint needs the PostgreSQL version: when it runs the benchmarks itself the gate brings up
the database (provider chain) and hands it to pytest through ``DATABASE_URL``, and records the
fingerprint in the run's JSON; a ``--json`` run without one is fingerprinted with the version
unknown (comparable only with such runs).

When it ran the benchmarks itself, the files of benchmarks flagged as regressions run once more
and the better of the two measurements is judged (``--no-confirm`` skips this).

Exit status: 0 pass, 1 a target missed, 2 a regression, 3 could not measure (the worst wins).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

from reports import ab
from reports.environment import fingerprint, git_commit, probe_machine
from reports.figures import (
    FIGURES_DIR,
    ROOT,
    benchmark_key,
    figures_from_json,
    find_pairs,
    read_json,
    write_figures,
)
from reports.formatting import fmt_bound, fmt_seconds, fmt_terse
from reports.history import (
    BaselineError,
    RegressionCheck,
    RunRecord,
    append_run,
    gate_baseline,
    history_path,
    read_history,
    rounds_of,
)
from reports.regression import Change, Comparison, compare_runs, low_quantile
from reports.targets import TargetResult, Targets, Verdict, load_targets

RUN_JSON: Final = ROOT / "reports" / "out" / "bench-gate.json"
BENCHMARK_PREFIXES: Final = ("bench.", "saving.", "speedup.", "dataset.")


class Exit(IntEnum):
    PASS = 0
    TARGET_MISSED = 1
    REGRESSION = 2
    NOT_MEASURED = 3


# --- baseline ---------------------------------------------------------------------------------


def benchmarks_by_name(bench_json: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The part of a pytest-benchmark JSON the gate compares: name -> group, median, rounds."""
    result: dict[str, dict[str, Any]] = {}
    for bench in bench_json.get("benchmarks") or []:
        stats = bench.get("stats") or {}
        if "median" not in stats:
            continue
        result[str(bench["fullname"])] = {
            "group": bench.get("group"),
            "key": benchmark_key(bench),
            "extra_info": bench.get("extra_info") or {},
            "stats": {"median": stats["median"], "data": list(stats.get("data") or [])},
        }
    return result


def benchmarks_of_record(record: RunRecord) -> dict[str, dict[str, Any]]:
    """A history line's rounds in the shape :func:`compare_runs` takes."""
    return {
        name: {"group": r.get("group"), "stats": {"median": r.get("median"), "data": r["data"]}}
        for name, r in record.rounds.items()
    }


def run_fingerprint(bench_json: Mapping[str, Any]) -> str:
    recorded = (bench_json.get("workspace_bench") or {}).get("fingerprint")
    return str(recorded) if recorded else fingerprint(probe_machine().as_dict(), None)


def run_scale(bench_json: Mapping[str, Any]) -> str:
    scales = figures_from_json(bench_json)[1]["scales"]
    return str(scales[0]) if len(scales) == 1 else "mixed"


def history_record(
    bench_json: Mapping[str, Any],
    result: GateResult,
    figures: Mapping[str, float],
    *,
    source: str = "gate",
) -> RunRecord:
    """The history line of a judged run."""
    commit = (bench_json.get("commit_info") or {}).get("id") or git_commit().get("commit", "")
    if result.exit is Exit.REGRESSION:
        check = RegressionCheck.REGRESSION
    elif result.baseline is None:
        check = RegressionCheck.FIRST
    else:
        check = RegressionCheck.OK
    missed = any(r.verdict is not Verdict.PASS for r in result.targets)
    return RunRecord(
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=str(commit),
        fingerprint=result.fingerprint,
        scale=result.scale,
        verdict="fail" if missed else "pass",
        figures=dict(figures),
        machine=probe_machine().as_dict(),
        source=source,
        regression=check.value,
        baseline=result.baseline.label() if result.baseline else None,
        rounds=rounds_of(bench_json),
    )


# --- running ----------------------------------------------------------------------------------


@contextmanager
def benchmark_database() -> Iterator[tuple[dict[str, str], str]]:
    """A database from the provider chain for the benchmark runs: (their environment, this
    machine's fingerprint, which needs the server's version)."""
    from fixtures.database import provide_database

    with provide_database(os.environ) as info:
        print(f"gate: {info.describe()}", flush=True)
        env = {**os.environ, "DATABASE_URL": info.dsn}
        yield env, fingerprint(probe_machine().as_dict(), info.server_version)


def run_benchmarks(
    out: Path,
    pytest_args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    select: bool = True,
) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    where = ["benchmarks"] if select else []
    command = [
        sys.executable, "-m", "pytest", *where, "-q", "-p", "no:randomly",
        f"--benchmark-json={out}", *pytest_args,
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def confirm(
    bench_json: Mapping[str, Any],
    flagged: Sequence[str],
    out: Path,
    pytest_args: Sequence[str],
    quantile: float,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Re-measure the flagged benchmarks once and keep, per benchmark, the run whose low quantile
    is lower: a burst of contention rarely hits the same benchmark twice, a regression does.
    Whole files run again (in file order: the query pairs depend on it)."""
    again_path = out.with_name(out.stem + "-confirm.json")
    files = sorted({name.split("::", 1)[0] for name in flagged})
    print(f"gate: re-measuring {len(flagged)} flagged benchmark(s) in {', '.join(files)}")
    if run_benchmarks(again_path, [*files, *pytest_args], env=env, select=False) != 0:
        return dict(bench_json)
    again = {
        b["fullname"]: b
        for b in read_json(again_path).get("benchmarks") or []
        if b["fullname"] in flagged
    }
    merged = dict(bench_json)
    benchmarks = []
    for bench in bench_json.get("benchmarks") or []:
        other = again.get(bench["fullname"])
        if other is not None and low_quantile(other, quantile) < low_quantile(bench, quantile):
            bench = {**other, "extra_info": {**bench.get("extra_info", {}), "confirmed": True}}
        benchmarks.append(bench)
    merged["benchmarks"] = benchmarks
    return merged


# --- printing ---------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparison_table(comparisons: Sequence[Comparison], quantile: float) -> str:
    def sig(c: Comparison) -> str:
        if c.significant is None:
            return "-"
        return f"{'yes' if c.significant else 'no'} (p={c.p_value:.2g})"

    return _table(
        (
            "benchmark",
            "baseline median",
            "now median",
            f"change (p{quantile * 100:.0f})",
            "tolerance",
            "significant",
            "verdict",
        ),
        (
            (
                c.benchmark.removeprefix("benchmarks/"),
                fmt_seconds(c.baseline_median),
                fmt_seconds(c.now_median),
                "-" if c.change is None else f"{c.change:+.1%}",
                f"{c.tolerance:.0%}",
                sig(c),
                c.verdict.value,
            )
            for c in comparisons
        ),
    )


def targets_table(results: Sequence[TargetResult]) -> str:
    return _table(
        ("target", "n", "median", "95% interval", "plan", "verdict", "goal", "goal verdict"),
        (
            (
                r.target.id,
                "-" if r.estimate is None else str(r.estimate.n),
                fmt_terse(r.measured, r.target.unit),
                "-"
                if r.estimate is None
                else f"[{fmt_terse(r.estimate.low, r.target.unit)}, "
                f"{fmt_terse(r.estimate.high, r.target.unit)}]",
                fmt_bound(r.target.op, r.target.plan, r.target.unit, fmt_terse),
                r.verdict.value,
                fmt_bound(r.target.op, r.target.goal, r.target.unit, fmt_terse),
                r.goal_verdict.value,
            )
            for r in results
        ),
    )  # fmt: skip


def pairs_table(bench_json: Mapping[str, Any]) -> str:
    return _table(
        ("claim (same run)", "before", "after", "speed-up", "saving"),
        (
            (p.claim, fmt_seconds(p.before_median_s), fmt_seconds(p.after_median_s),
             f"{p.speedup:.1f}x", f"{p.saving:.1%}")
            for p in find_pairs(bench_json)
        ),
    )  # fmt: skip


# --- the gate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    exit: Exit
    targets: list[TargetResult]
    comparisons: list[Comparison]
    baseline: RunRecord | None
    message: str
    fingerprint: str = ""
    scale: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit": int(self.exit),
            "verdict": self.exit.name.lower(),
            "message": self.message,
            "scale": self.scale,
            "fingerprint": self.fingerprint,
            "baseline": self.baseline.label() if self.baseline else None,
            "targets": [r.as_dict() for r in self.targets],
            "comparisons": [c.as_dict() for c in self.comparisons],
        }


def benchmark_targets(
    targets: Targets, figures: Mapping[str, float], scale: str | None = None
) -> list[TargetResult]:
    """The targets whose figure comes from the benchmarks (the load test judges the others)."""
    return [
        r
        for r in targets.evaluate(figures, scale)
        if r.target.metric.startswith(BENCHMARK_PREFIXES)
    ]


def judge(
    bench_json: Mapping[str, Any],
    targets: Targets,
    history: Sequence[RunRecord] = (),
    *,
    strict: bool = False,
    pin: str | None = None,
    same_run: Mapping[str, Any] | None = None,
) -> GateResult:
    """Judge one run against ``history`` (no I/O). ``same_run``: the one run whose ratios judge
    the targets when ``bench_json`` mixes in re-measured benchmarks (default: ``bench_json``).
    Raises :class:`BaselineError` when ``pin`` names no usable line."""
    now = benchmarks_by_name(bench_json)
    if not now:
        return GateResult(Exit.NOT_MEASURED, [], [], None, "no benchmark was timed")
    figures, _ = figures_from_json(same_run if same_run is not None else bench_json)
    scale, fp = run_scale(bench_json), run_fingerprint(bench_json)
    results = benchmark_targets(targets, figures, scale)
    judged = (Verdict.FAIL, Verdict.INCONCLUSIVE)
    missed = [r for r in results if r.verdict in judged or (strict and r.goal_verdict in judged)]

    baseline = gate_baseline(history, fp, scale, pin)
    notes: list[str] = []
    comparisons: list[Comparison] = []
    if baseline is None:
        notes.append(
            f"no baseline for scale {scale!r} on this machine ({fp}): this run is recorded "
            "in the history as the baseline"
        )
    else:
        notes.append(f"baseline: history {baseline.label()}")
        comparisons = compare_runs(benchmarks_of_record(baseline), now, targets.gate)

    regressions = [c for c in comparisons if c.verdict is Change.REGRESSION]
    if regressions:
        code = Exit.REGRESSION
        notes.append(
            f"{len(regressions)} regression(s): {', '.join(c.benchmark for c in regressions)}"
        )
    elif missed:
        code = Exit.TARGET_MISSED
    else:
        code = Exit.PASS
    if missed:
        notes.append(f"{len(missed)} target(s) missed: {', '.join(r.target.id for r in missed)}")
    return GateResult(code, results, comparisons, baseline, "; ".join(notes), fp, scale)


def report(result: GateResult, bench_json: Mapping[str, Any], quantile: float) -> str:
    parts = [
        "== before/after pairs (medians, same run)",
        pairs_table(bench_json),
        "",
        "== targets from the benchmarks",
        targets_table(result.targets),
        "",
    ]
    if result.comparisons:
        title = (
            f"== against the baseline: history {result.baseline.label()}" if result.baseline else ""
        )
        parts += [title, comparison_table(result.comparisons, quantile), ""]
    parts.append(f"gate: {result.exit.name.lower()} (exit {int(result.exit)}): {result.message}")
    return "\n".join(parts)


def _not_measured(figures_dir: Path, message: str) -> int:
    result = GateResult(Exit.NOT_MEASURED, [], [], None, message)
    figures_dir.mkdir(parents=True, exist_ok=True)
    (figures_dir / "gate.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    print(f"gate: not_measured (exit 3): {message}")
    return Exit.NOT_MEASURED


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.gate", description=__doc__)
    parser.add_argument("--json", type=Path, help="judge this pytest-benchmark JSON, run nothing")
    parser.add_argument(
        "--history", type=Path, default=None, help="the history file (default: HISTORY_FILE)"
    )
    parser.add_argument(
        "--baseline", default=os.environ.get("GATE_BASELINE") or None,
        help="pin the baseline: a history line number or a commit prefix (GATE_BASELINE)",
    )  # fmt: skip
    parser.add_argument(
        "--no-record", dest="record", action="store_false",
        help="judge only: append no line to the history",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RUN_JSON, help="where the run's JSON goes")
    parser.add_argument("--figures-dir", type=Path, default=FIGURES_DIR)
    parser.add_argument(
        "--strict", action="store_true", default=os.environ.get("STRICT") == "1",
        help="our goals fail the gate too, not only the plan's figures (STRICT=1)",
    )  # fmt: skip
    parser.add_argument(
        "--no-confirm", dest="confirm", action="store_false",
        help="do not re-measure the benchmarks flagged as regressions",
    )  # fmt: skip
    parser.add_argument(
        "--base", default=os.environ.get("GATE_BASE") or None,
        help="A/B: measure this commit and the working tree in one run, interleaved (GATE_BASE)",
    )  # fmt: skip
    parser.add_argument("--pairs", type=int, default=None, help="A/B: runs of each side")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    history_file: Path = args.history or history_path()
    if args.base is not None:
        return _ab(args)

    if args.json is not None:
        return _judge_and_record(args, args.json, history_file, None)
    with contextlib.ExitStack() as stack:
        try:
            env, fp = stack.enter_context(benchmark_database())
        except Exception as exc:  # no database: nothing can be measured
            return _not_measured(args.figures_dir, f"no database: {type(exc).__name__}: {exc}")
        status = run_benchmarks(args.out, args.pytest_args, env=env)
        if status != 0:
            return _not_measured(args.figures_dir, f"the benchmarks failed (pytest exit {status})")
        with contextlib.suppress(OSError, ValueError):
            bench_json = read_json(args.out)
            bench_json["workspace_bench"] = {"fingerprint": fp}
            args.out.write_text(json.dumps(bench_json), encoding="utf-8")
        return _judge_and_record(args, args.out, history_file, env)
    raise AssertionError("unreachable")


def _ab(args: argparse.Namespace) -> int:
    """Base and head in one run (:mod:`reports.ab`); the head's runs also judge the targets."""
    targets = load_targets()
    settings = targets.gate
    head_env = {}
    if os.environ.get(ab.SLOWDOWN_ENV):
        head_env[ab.SLOWDOWN_ENV] = os.environ[ab.SLOWDOWN_ENV]
    with contextlib.ExitStack() as stack:
        try:
            env, _ = stack.enter_context(benchmark_database())
        except Exception as exc:  # no database: nothing can be measured
            return _not_measured(args.figures_dir, f"no database: {type(exc).__name__}: {exc}")
        env = {k: v for k, v in env.items() if k != ab.SLOWDOWN_ENV}
        print(f"gate: A/B, base {args.base} against the working tree", flush=True)
        result = ab.measure(
            args.base,
            args.out.parent / "ab",
            args.pytest_args,
            env,
            pairs=args.pairs or settings.ab_pairs,
            tolerance_for=settings.ab_tolerance_for,
            budget_s=settings.ab_budget_s,
            head_env=head_env,
        )
    if result is None:
        return _not_measured(args.figures_dir, "a benchmark run of the base or the head failed")
    ab.write(result, args.figures_dir / "ab.json")
    judged = judge(result.head_json, targets, (), strict=args.strict)
    code = max(judged.exit, Exit.REGRESSION if result.regressions else Exit.PASS)
    notes = [f"A/B against {args.base}"]
    if result.base_failed:
        notes.append(result.base_failed)
    if result.regressions:
        notes.append(
            f"{len(result.regressions)} regression(s): "
            + ", ".join(c.benchmark for c in result.regressions)
        )
    if result.inconclusive:
        notes.append(
            f"{len(result.inconclusive)} inconclusive (not failing): "
            + ", ".join(c.benchmark for c in result.inconclusive)
        )
    gate = dataclasses.replace(judged, exit=Exit(code), message="; ".join(notes))
    (args.figures_dir / "gate.json").write_text(json.dumps(gate.as_dict(), indent=2) + "\n")
    print(ab.format_table(result))
    print(report(gate, result.head_json, settings.quantile))
    return int(code)


def _judge_and_record(
    args: argparse.Namespace, source: Path, history_file: Path, env: Mapping[str, str] | None
) -> int:
    try:
        bench_json = read_json(source)
    except (OSError, ValueError) as exc:
        return _not_measured(args.figures_dir, f"cannot read {source}: {exc}")
    targets = load_targets()
    history = read_history(history_file)
    try:
        result = judge(bench_json, targets, history, strict=args.strict, pin=args.baseline)
        flagged = [c.benchmark for c in result.comparisons if c.verdict is Change.REGRESSION]
        if flagged and env is not None and args.confirm:
            first = bench_json
            bench_json = confirm(
                bench_json, flagged, args.out, args.pytest_args, targets.gate.quantile, env
            )
            result = judge(
                bench_json, targets, history, strict=args.strict, pin=args.baseline,
                same_run=first,
            )  # fmt: skip
    except BaselineError as exc:
        return _not_measured(args.figures_dir, str(exc))
    if result.exit is Exit.NOT_MEASURED:
        return _not_measured(args.figures_dir, result.message)
    figures, meta = figures_from_json(bench_json)
    write_figures(args.figures_dir / "bench.json", figures, meta)
    (args.figures_dir / "gate.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    print(report(result, bench_json, targets.gate.quantile))
    if args.record:
        path = append_run(history_record(bench_json, result, figures), history_file)
        print(f"gate: recorded in the history ({path})")
    return int(result.exit)


if __name__ == "__main__":
    sys.exit(main())
