"""``make bench``'s step table: order, dependencies, and what a failed step does to the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.processes import ChildError
from reports import bench
from reports.report import StepStatus
from reports.targets import load_targets


def test_each_step_needs_only_steps_before_it() -> None:
    seen: set[str] = set()
    for spec in bench.STEPS:
        assert set(spec.needs) <= seen, spec.name
        assert spec.name not in seen
        seen.add(spec.name)
    assert bench.STEPS[-1] is bench.REPORT_STEP


def never_runs(run: bench.Bench) -> str:
    raise AssertionError("a step whose need failed must not run")


def service_exits(run: bench.Bench) -> str:
    raise ChildError("python -m reference exited with code 1: address in use")


def test_a_failed_step_is_reported_and_skips_what_needs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = bench.Bench(scale="tiny", targets=load_targets(), out_dir=tmp_path, load_run_time="9s")
    failed = run.step(bench.StepSpec("service", "start the service", service_exits))
    skipped = run.step(
        bench.StepSpec("load_unified", "load, {load_run_time}", never_runs, ("service",))
    )
    ran = run.step(bench.StepSpec("report", "report at {scale}", lambda _: "written"))

    assert (failed.status, failed.error) == (
        StepStatus.FAILED,
        "python -m reference exited with code 1: address in use",
    )
    assert (skipped.status, skipped.detail) == (StepStatus.SKIPPED, "needs service")
    assert (ran.status, ran.detail, ran.title) == (StepStatus.OK, "written", "report at tiny")
    err = capsys.readouterr().err
    total = len(bench.STEPS)
    assert f"[1/{total}] start the service: FAILED" in err
    assert f"[2/{total}] load, 9s: skipped (needs service)" in err
    assert f"[3/{total}] report at tiny: done" in err
