"""The regression gate's statistics, verdicts, exit codes and baseline handling (no timing)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reports import gate, history
from reports.figures import benchmark_key, figures_from_json, find_pairs
from reports.gate import Exit, judge
from reports.regression import Change, compare_runs, compare_samples
from reports.targets import GateSettings, load_targets

TOLERANCE = 0.25
ALPHA = 0.01
MIN_ROUNDS = 5


def samples(median: float, n: int = 200, noise: float = 0.05, seed: int = 0) -> list[float]:
    """Timings around ``median``: lognormal noise with a few slow outliers, as a busy machine."""
    rng = np.random.default_rng(seed)
    values = median * rng.lognormal(0.0, noise, n)
    outliers = rng.random(n) < 0.03
    values[outliers] *= rng.uniform(1.5, 4.0, outliers.sum())
    return [float(v) for v in values]


def bench(
    fullname: str, rounds: list[float], group: str = "queries", **extra: Any
) -> dict[str, Any]:
    name = fullname.split("::")[-1]
    return {
        "group": group,
        "name": name,
        "fullname": fullname,
        "extra_info": {"scale": "plan", "seed": 42, "heavy_assets": 10_000, **extra},
        "stats": {"median": float(np.median(rounds)), "data": rounds},
    }


def run_json(*benches: dict[str, Any]) -> dict[str, Any]:
    return {"benchmarks": list(benches), "datetime": "2025-01-01T00:00:00", "commit_info": {}}


def query_pair(before_median: float, after_median: float, seed: int = 0) -> list[dict[str, Any]]:
    claim = "queries.by_job"
    return [
        bench("b.py::test_before[by_job]", samples(before_median, seed=seed), "queries.by_job",
              claim=claim, side="before"),
        bench("b.py::test_after[by_job]", samples(after_median, seed=seed + 1), "queries.by_job",
              claim=claim, side="after"),
    ]  # fmt: skip


# --- statistics ---------------------------------------------------------------------------------


def test_identical_samples_pass() -> None:
    rounds = samples(1e-3)
    change, p, verdict = compare_samples(rounds, list(rounds), TOLERANCE, ALPHA, MIN_ROUNDS)
    assert change == 0.0
    assert p is not None
    assert p > ALPHA
    assert verdict is Change.OK


def test_clearly_slower_sample_is_a_regression() -> None:
    change, p, verdict = compare_samples(
        samples(1e-3, seed=1), samples(2e-3, seed=2), TOLERANCE, ALPHA, MIN_ROUNDS
    )
    assert change > 0.9
    assert p is not None
    assert p < 1e-6
    assert verdict is Change.REGRESSION


@pytest.mark.parametrize("seed", range(20))
def test_noisy_but_equal_samples_are_not_a_regression(seed: int) -> None:
    base = samples(1e-3, noise=0.3, seed=2 * seed)
    now = samples(1e-3, noise=0.3, seed=2 * seed + 1)
    _, _, verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS)
    assert verdict is Change.OK


def test_slower_than_tolerance_but_not_significant_is_not_a_regression() -> None:
    base = [1.0, 1.1, 0.9, 1.0, 1.2, 1.6]
    now = [1.4, 1.35, 0.9, 1.0, 2.0, 1.42]
    change, p, verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS)
    assert change > TOLERANCE
    assert p is not None
    assert p >= ALPHA
    assert verdict is Change.OK


def test_significant_but_within_tolerance_is_not_a_regression() -> None:
    base = samples(1e-3, n=5000, noise=0.02, seed=3)
    now = [v * 1.10 for v in samples(1e-3, n=5000, noise=0.02, seed=4)]
    change, p, verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS)
    assert 0.05 < change < TOLERANCE
    assert p is not None
    assert p < ALPHA
    assert verdict is Change.OK


def test_contention_on_some_rounds_is_not_a_regression_on_the_low_quantile() -> None:
    base = samples(1e-3, n=1000, seed=11)
    rng = np.random.default_rng(12)
    now = [v * (rng.uniform(1.5, 4.0) if rng.random() < 0.6 else 1.0) for v in samples(1e-3, 1000)]
    median_change, _, median_verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS)
    change, p, verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS, quantile=0.1)
    assert median_change > 0.5
    assert median_verdict is Change.REGRESSION
    assert p is not None
    assert p < ALPHA
    assert change < TOLERANCE
    assert verdict is Change.OK


def test_a_shift_of_every_round_is_a_regression_on_the_low_quantile() -> None:
    base = samples(1e-3, n=1000, seed=13)
    now = [v * 1.4 for v in samples(1e-3, n=1000, seed=14)]
    change, _, verdict = compare_samples(base, now, TOLERANCE, ALPHA, MIN_ROUNDS, quantile=0.1)
    assert change > TOLERANCE
    assert verdict is Change.REGRESSION


def test_clearly_faster_sample_is_an_improvement() -> None:
    _, _, verdict = compare_samples(
        samples(2e-3, seed=5), samples(1e-3, seed=6), TOLERANCE, ALPHA, MIN_ROUNDS
    )
    assert verdict is Change.IMPROVED


def test_too_few_rounds_is_never_a_regression() -> None:
    _, p, verdict = compare_samples([1.0, 1.0], [9.0, 9.0], TOLERANCE, ALPHA, MIN_ROUNDS)
    assert p is None
    assert verdict is Change.FEW_ROUNDS


def test_group_tolerance_applies() -> None:
    settings = GateSettings(tolerance=0.25, alpha=ALPHA, tolerance_by_group={"dedup": 0.5})
    base = {"x": bench("x", samples(1e-3, seed=7), group="dedup.lsh")}
    now = {"x": bench("x", [v * 1.4 for v in samples(1e-3, seed=8)], group="dedup.lsh")}
    (comparison,) = compare_runs(base, now, settings)
    assert comparison.tolerance == 0.5
    assert comparison.significant
    assert comparison.verdict is Change.OK


def test_new_and_gone_benchmarks_are_listed_not_failed() -> None:
    base = {"old": bench("old", samples(1e-3))}
    now = {"new": bench("new", samples(1e-3))}
    verdicts = {c.benchmark: c.verdict for c in compare_runs(base, now, GateSettings())}
    assert verdicts == {"new": Change.NEW, "old": Change.GONE}


# --- figures ------------------------------------------------------------------------------------


def test_pairs_give_saving_and_speedup() -> None:
    figures, meta = figures_from_json(run_json(*query_pair(10e-3, 1e-3)))
    assert figures["speedup.queries.by_job"] == pytest.approx(10, rel=0.1)
    assert figures["saving.queries.by_job"] == pytest.approx(0.9, abs=0.01)
    assert figures["bench.queries.by_job.before.median_s"] == pytest.approx(10e-3, rel=0.1)
    assert figures["dataset.heavy_assets"] == 10_000
    assert meta["scales"] == ["plan"]


def test_rate_and_own_figures() -> None:
    load = bench("l.py::test_fixture_load", [2.0] * 5, "fixture_load", units=100_000,
                 rate_figure="bench.fixture_load.rows_per_s")  # fmt: skip
    search = bench("s.py::test_http", [0.01] * 5, "search", figures={"bench.search.http_p95_ms": 7})
    figures, _ = figures_from_json(run_json(load, search))
    assert figures["bench.fixture_load.rows_per_s"] == 50_000
    assert figures["bench.search.http_p95_ms"] == 7
    assert benchmark_key(load) == "fixture_load"


def test_a_claim_with_two_benchmarks_on_one_side_is_an_error() -> None:
    before, after = query_pair(2e-3, 1e-3)
    with pytest.raises(ValueError, match="two 'before'"):
        find_pairs(run_json(before, after, {**before, "fullname": "b.py::other"}))


# --- the gate end to end (exit codes, baseline from the history) ---------------------------------


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def gate_main(tmp_path: Path, data: dict[str, Any], history_file: str = "h.jsonl", *extra: str):
    path = write(tmp_path, "run.json", data)
    args = ["--json", str(path), "--history", str(tmp_path / history_file)]
    return gate.main([*args, "--figures-dir", str(tmp_path / "fig"), *extra])


def test_missing_baseline_is_recorded_and_not_an_error(tmp_path: Path, capsys) -> None:
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3))) == Exit.PASS
    assert "no baseline" in capsys.readouterr().out
    (line,) = history.read_history(tmp_path / "h.jsonl")
    assert line.source == "gate"
    assert line.regression == history.RegressionCheck.FIRST
    assert line.scale == "plan"
    assert line.figures["speedup.queries.by_job"] == pytest.approx(10, rel=0.1)
    rounds = line.rounds["b.py::test_after[by_job]"]["data"]
    assert len(rounds) == history.MAX_ROUNDS
    assert rounds == sorted(rounds)
    assert all(float(f"{v:.4g}") == v for v in rounds)
    assert len((tmp_path / "h.jsonl").read_text()) < 4_000
    gate_json = json.loads((tmp_path / "fig" / "gate.json").read_text())
    assert gate_json["exit"] == 0
    assert gate_json["baseline"] is None


def test_unchanged_run_passes_against_its_baseline(tmp_path: Path) -> None:
    targets = load_targets()
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3, seed=0))) == Exit.PASS
    records = history.read_history(tmp_path / "h.jsonl")
    result = judge(run_json(*query_pair(10e-3, 1e-3, seed=10)), targets, records)
    assert result.exit is Exit.PASS
    assert result.baseline is not None
    assert result.baseline.line == 1
    assert {c.verdict for c in result.comparisons} == {Change.OK}


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3))) == Exit.PASS

    missed = run_json(*query_pair(10e-3, 5e-3))
    assert gate_main(tmp_path, missed, "other.jsonl") == Exit.TARGET_MISSED
    assert "query_by_job" in capsys.readouterr().out

    slower = run_json(*query_pair(30e-3, 3e-3, seed=30))
    assert gate_main(tmp_path, slower) == Exit.REGRESSION
    out = capsys.readouterr().out
    assert "REGRESSION" in out
    assert "test_after[by_job]" in out

    assert gate_main(tmp_path, run_json()) == Exit.NOT_MEASURED
    absent = ["--json", str(tmp_path / "absent.json"), "--history", str(tmp_path / "h.jsonl")]
    assert gate.main([*absent, "--figures-dir", str(tmp_path / "fig")]) == Exit.NOT_MEASURED
    assert json.loads((tmp_path / "fig" / "gate.json").read_text())["exit"] == 3


def test_a_regressed_run_is_not_the_next_baseline(tmp_path: Path) -> None:
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3, seed=0))) == Exit.PASS
    assert gate_main(tmp_path, run_json(*query_pair(30e-3, 3e-3, seed=2))) == Exit.REGRESSION
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3, seed=4))) == Exit.PASS
    lines = history.read_history(tmp_path / "h.jsonl")
    assert [r.regression for r in lines] == ["no baseline", "regression", "ok"]
    assert lines[2].baseline is not None
    assert lines[2].baseline.startswith("line 1 ")
    assert history.gate_baseline(lines, lines[0].fingerprint, "plan") == lines[2]


def test_only_the_same_machine_and_scale_is_a_baseline(tmp_path: Path) -> None:
    run = run_json(*query_pair(10e-3, 1e-3))
    assert gate_main(tmp_path, run) == Exit.PASS
    (line,) = history.read_history(tmp_path / "h.jsonl")
    assert history.gate_baseline([line], "another machine", "plan") is None
    assert history.gate_baseline([line], line.fingerprint, "tiny") is None
    no_rounds = replace(line, rounds={}, line=2)
    assert history.gate_baseline([line, no_rounds], line.fingerprint, "plan") == line


def test_pinned_baseline(tmp_path: Path, capsys) -> None:
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3, seed=0))) == Exit.PASS
    assert gate_main(tmp_path, run_json(*query_pair(30e-3, 3e-3, seed=2))) == Exit.REGRESSION
    # Pinned to the slow run, the same slow run again is no regression; unpinned it is.
    slow_again = run_json(*query_pair(30e-3, 3e-3, seed=4))
    pinned = ("--baseline", "2", "--no-record")
    assert gate_main(tmp_path, slow_again, "h.jsonl", *pinned) == Exit.PASS
    assert gate_main(tmp_path, slow_again, "h.jsonl", "--no-record") == Exit.REGRESSION
    # A commit pin takes that commit's latest line, passed or not.
    commit = history.read_history(tmp_path / "h.jsonl")[0].commit
    by_commit = ("--baseline", commit[:8], "--no-record")
    assert gate_main(tmp_path, slow_again, "h.jsonl", *by_commit) == Exit.PASS
    capsys.readouterr()
    assert gate_main(tmp_path, slow_again, "h.jsonl", "--baseline", "99") == Exit.NOT_MEASURED
    assert "GATE_BASELINE=99" in capsys.readouterr().out


def test_no_record_leaves_the_history_alone(tmp_path: Path) -> None:
    assert gate_main(tmp_path, run_json(*query_pair(10e-3, 1e-3)), "h.jsonl", "--no-record") == 0
    assert not (tmp_path / "h.jsonl").exists()


def test_strict_fails_on_our_goals() -> None:
    run = run_json(*query_pair(10e-3, 1e-3))
    assert judge(run, load_targets()).exit is Exit.PASS
    assert judge(run, load_targets(), strict=True).exit is Exit.TARGET_MISSED
