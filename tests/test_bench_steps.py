"""``make bench``'s step table: order, dependencies, and what a failed step does to the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fixtures.processes import ChildError
from reports import bench
from reports.history import INTERRUPTED, comparable, read_history
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


def test_runs_get_folders_of_their_own(tmp_path: Path) -> None:
    started = datetime(2026, 11, 28, 4, 1, 26, tzinfo=UTC)
    first = bench.run_dir(tmp_path, started, "308bb3a15f0123")
    assert first.name == "20261128T040126Z-308bb3a15f"
    first.mkdir()
    assert bench.run_dir(tmp_path, started, "308bb3a15f0123").name.endswith("-2")
    assert bench.run_dir(tmp_path, started, "").name.endswith("-nocommit")


def interrupted(run: bench.Bench) -> str:
    raise KeyboardInterrupt


def run_once(runs: Path, action: bench.StepSpec, history: Path) -> tuple[bench.Bench, int]:
    """A run of one measuring step then the real report step, as ``execute`` runs them."""
    run = bench.Bench(
        scale="tiny",
        targets=load_targets(),
        out_dir=bench.run_dir(runs / "runs", datetime.now(UTC), "abc"),
        published_dir=runs,
        env={"HISTORY_FILE": str(history)},
    )
    run.out_dir.mkdir(parents=True)
    run.run.environment = {"git": {"commit": "abc"}}
    run.step(action)
    run.interrupted = False
    run.step(bench.REPORT_STEP)
    run._rewrite_after_report()
    return run, run._finish()


def test_an_interrupted_run_keeps_the_last_complete_report_and_is_recorded_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    complete, _ = run_once(tmp_path, bench.StepSpec("data", "data", lambda _: "ok"), history)
    published = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "latest").read_text().strip() == str(complete.out_dir.relative_to(tmp_path))

    stopped, code = run_once(tmp_path, bench.StepSpec("data", "data", interrupted), history)
    assert code == 130
    assert (stopped.out_dir / "index.html").exists()  # its own folder has its partial report
    assert (tmp_path / "index.html").read_text(encoding="utf-8") == published
    assert (tmp_path / "latest").read_text().strip() == str(complete.out_dir.relative_to(tmp_path))
    records = read_history(history)
    assert [r.verdict for r in records] == ["fail", INTERRUPTED]
    assert comparable(records, records[0].fingerprint, "tiny") == records[:1]
    assert "interrupted: recorded as such" in capsys.readouterr().out


def test_the_quick_run_gives_benchmarks_a_smaller_budget_unless_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, str]] = []

    def capture(command: list[str], env: dict[str, str], **_: object) -> tuple[int, str]:
        budget = [a for a in command if a.startswith("--benchmark-max-time=")]
        seen.append((env.get("BENCH_ROUND_BUDGET_S"), budget))
        return 1, "stopped here"

    monkeypatch.setattr(bench, "run_child", capture)
    for scale, env in (("tiny", {}), ("plan", {}), ("tiny", {"BENCH_ROUND_BUDGET_S": "2"})):
        run = bench.Bench(scale=scale, targets=load_targets(), out_dir=tmp_path, env=env)
        with pytest.raises(bench.StepError, match="stopped here"):
            run._benchmarks()
    quick = str(bench.QUICK_ROUND_BUDGET_S)
    # Our rounds (rounds_for) and pytest-benchmark's calibration get the same budget.
    assert seen == [
        (quick, [f"--benchmark-max-time={quick}"]),
        (None, []),
        ("2", ["--benchmark-max-time=2"]),
    ]


def test_the_quick_browser_profile_is_the_default_at_tiny_scale_only() -> None:
    from benchmarks.browser.step import PROFILES, BrowserSettings

    quick = BrowserSettings.from_env({}, "tiny")
    assert quick == PROFILES["quick"]
    assert (quick.mobile, quick.filmstrip, quick.scroll_targets, quick.searches) == (
        False, False, (), 1,
    )  # fmt: skip
    assert quick.rounds >= 2  # every figure gets an interval, even in the quick run
    assert BrowserSettings.from_env({}, "plan") == PROFILES["full"]
    assert BrowserSettings.from_env({"BROWSER_PROFILE": "full"}, "tiny") == PROFILES["full"]
    assert BrowserSettings.from_env({"BROWSER_ROUNDS": "5"}, "tiny").rounds == 5
    with pytest.raises(ValueError, match="BROWSER_PROFILE='phone'"):
        BrowserSettings.from_env({"BROWSER_PROFILE": "phone"}, "tiny")
    with pytest.raises(ValueError, match="BROWSER_ROUNDS='0'"):
        BrowserSettings.from_env({"BROWSER_ROUNDS": "0"}, "plan")


def test_without_phone_rounds_the_phone_target_is_not_applicable_and_says_why() -> None:
    from reports.targets import Verdict, evaluate_one

    target = next(t for t in load_targets().targets if t.id == "browser_mobile")
    quick = evaluate_one(target, {"browser.phone_rounds": 0}, "tiny")
    assert quick.verdict is Verdict.NOT_APPLICABLE
    assert "BROWSER_PROFILE=full" in quick.reason
    measured = {"browser.phone_rounds": 3, "browser.after.mobile_ratio": 0.5}
    assert evaluate_one(target, measured, "tiny").verdict is Verdict.FAIL


def test_the_quick_run_leaves_the_legacy_load_out_by_choice_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = load_targets()
    assert bench.Bench(scale="tiny", targets=targets, out_dir=tmp_path, env={}).load_modes == (
        "unified",
    )
    both = ("unified", "legacy")
    assert bench.Bench(scale="plan", targets=targets, out_dir=tmp_path, env={}).load_modes == both
    env = {"LOAD_MODES": "unified,legacy"}
    assert bench.Bench(scale="tiny", targets=targets, out_dir=tmp_path, env=env).load_modes == both

    run = bench.Bench(scale="tiny", targets=targets, out_dir=tmp_path, env={})
    legacy = next(s for s in bench.STEPS if s.name == "load_legacy")
    step = run.step(bench.StepSpec(legacy.name, legacy.title, never_runs, (), legacy.left_out))
    assert step.status is StepStatus.SKIPPED
    assert "LOAD_MODES=unified (the quick run's default)" in step.detail
    assert "skipped (LOAD_MODES=unified" in capsys.readouterr().err
    assert bench.main({"LOAD_MODES": "legacy,sideways", "SCALE": "tiny"}) == 2


def test_browser_0_skips_the_browser_step_and_its_targets_read_not_measured(
    tmp_path: Path,
) -> None:
    from reports.targets import Verdict

    targets = load_targets()
    run = bench.Bench(scale="plan", targets=targets, out_dir=tmp_path, env={"BROWSER": "0"})
    spec = next(s for s in bench.STEPS if s.name == "browser")
    step = run.step(bench.StepSpec(spec.name, spec.title, never_runs, (), spec.left_out))
    assert (step.status, step.detail) == (
        StepStatus.SKIPPED,
        "BROWSER=0 (the browser targets read not measured)",
    )
    verdict = {r.target.id: r.verdict for r in targets.evaluate({}, "plan")}
    assert verdict["browser_initial_load"] is Verdict.NOT_MEASURED


@pytest.mark.parametrize(
    ("scale", "env", "skipped"),
    [("plan", {}, False), ("100k", {}, True), ("1m", {}, True), ("1m", {"BROWSER": "1"}, False)],
)
def test_above_the_browser_targets_max_scale_the_step_is_left_out_and_they_say_why(
    tmp_path: Path, scale: str, env: dict[str, str], skipped: bool
) -> None:
    from reports.targets import Verdict

    targets = load_targets()
    run = bench.Bench(scale=scale, targets=targets, out_dir=tmp_path, env=env)
    spec = next(s for s in bench.STEPS if s.name == "browser")
    assert spec.left_out is not None
    reason = spec.left_out(run)
    assert (reason is not None) is skipped
    if skipped:
        assert reason is not None
        assert "measured up to SCALE=plan" in reason
        found = {r.target.id: r for r in targets.evaluate({}, scale)}
        assert found["browser_initial_load"].verdict is Verdict.NOT_APPLICABLE
        assert "signs each asset" in (found["browser_initial_load"].reason or "")


def test_the_hot_path_step_comes_after_the_load_steps() -> None:
    names = [s.name for s in bench.STEPS]
    assert names.index("hot_path") > max(names.index("load_unified"), names.index("load_legacy"))


def hot_path_step() -> bench.StepSpec:
    spec = next(s for s in bench.STEPS if s.name == "hot_path")
    return bench.StepSpec(spec.name, spec.title, never_runs, (), spec.left_out)


def with_wrk(directory: Path) -> str:
    """A PATH whose only ``wrk`` is a stand-in (the step runs nothing here)."""
    wrk = directory / "wrk"
    wrk.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    wrk.chmod(0o755)
    return str(directory)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"PATH": "/nonexistent"}, "wrk is not installed (Debian: apt-get install wrk)"),
        ({"HOT_PATH": "0"}, "HOT_PATH=0"),
    ],
)
@pytest.mark.parametrize("scale", ["tiny", "plan"])
def test_the_hot_path_step_is_left_out_without_wrk_or_with_hot_path_0_and_says_why(
    tmp_path: Path, env: dict[str, str], reason: str, scale: str
) -> None:
    from reports.targets import Verdict

    targets = load_targets()
    if scale == "tiny":
        env = {**env, "HOT_PATH": env.get("HOT_PATH", "1")}
    run = bench.Bench(scale=scale, targets=targets, out_dir=tmp_path, env=env)
    step = run.step(hot_path_step())
    assert step.status is StepStatus.SKIPPED
    assert step.detail.startswith(reason)
    assert "hot path targets read not applicable" in step.detail
    found = {r.target.id: r for r in targets.evaluate(run.run.figures, scale)}
    for target_id in ("hot_workspace_rps", "hot_search_rps"):
        assert found[target_id].goal_verdict is Verdict.NOT_APPLICABLE
        assert "hot_path step" in found[target_id].reason


@pytest.mark.parametrize(
    ("scale", "hot_path", "runs"),
    [("plan", "", True), ("tiny", "", False), ("tiny", "1", True), ("plan", "off", False)],
)
def test_the_hot_path_runs_by_default_except_in_the_quick_run(
    tmp_path: Path, scale: str, hot_path: str, runs: bool
) -> None:
    env = {"PATH": with_wrk(tmp_path), "HOT_PATH": hot_path}
    run = bench.Bench(scale=scale, targets=load_targets(), out_dir=tmp_path, env=env)
    spec = hot_path_step()
    assert spec.left_out is not None
    reason = spec.left_out(run)
    assert (reason is None) is runs, reason
    if scale == "tiny" and not runs:
        assert reason is not None
        assert "HOT_PATH=1 runs it" in reason


class StoppedService:
    stopped = 0

    def stop(self) -> None:
        self.stopped += 1


@pytest.mark.parametrize(
    ("env", "seconds", "rounds"),
    [({}, "5", "3"), ({"HOT_PATH_SECONDS": "2", "HOT_PATH_ROUNDS": "4"}, "2", "4")],
)
def test_the_hot_path_step_stops_the_service_and_puts_its_figures_with_intervals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], seconds: str, rounds: str
) -> None:
    from benchmarks.hot_path import Round, component
    from reports.targets import Verdict
    from reports.uncertainty import Estimate, get

    measured = [
        Round(route, i, rps + 100 * (i - 2), 2.0, 9.0, 3000.0, 0.4)
        for route, rps in (("workspace", 1800.0), ("search", 800.0))
        for i in (1, 2, 3)
    ]
    seen: list[tuple[list[str], dict[str, str]]] = []

    def hot_path(command: list[str], env: dict[str, str], **_: object) -> tuple[int, str]:
        seen.append((command, env))
        out = Path(command[command.index("--json") + 1])
        out.write_text(json.dumps(component(measured, "tiny", 5.0, 3)), encoding="utf-8")
        return 0, ""

    monkeypatch.setattr(bench, "run_child", hot_path)
    run = bench.Bench(scale="tiny", targets=load_targets(), out_dir=tmp_path, env=env)
    run.figures_dir.mkdir(parents=True)
    run.dsn = "postgresql://127.0.0.1/wsb_run"
    service = StoppedService()
    run.service = service  # type: ignore[assignment]

    detail = run._hot_path()

    assert service.stopped == 1
    assert run.service is None
    ((command, child_env),) = seen
    assert command[1:4] == ["-m", "benchmarks.hot_path", run.dsn]
    assert command[command.index("--seconds") + 1] == seconds
    assert command[command.index("--rounds") + 1] == rounds
    assert child_env["STORAGE_DIR"] == str(run.storage_dir)
    assert (run.figures_dir / "hot_path.json").exists()
    assert "workspace 1,800 req/s, search 800 req/s" in detail
    figures = run.run.figures
    assert get(figures, "hot.workspace.requests_per_s") == Estimate(1800, 1700, 1900, 3)
    for route in ("workspace", "search"):
        for stat in ("requests_per_s", "floor_per_s", "cpu_ms_per_request", "p50_ms", "p99_ms"):
            assert f"hot.{route}.{stat}:low" in figures, (route, stat)
    assert run.run.meta["hot"]["routes"]["workspace"].startswith("/v1/workspace")
    # Judged once measured: 1,700-1,900 req/s holds >= 1,500, 700-900 misses >= 1,000.
    found = {r.target.id: r for r in run.targets.evaluate(figures, "tiny")}
    assert found["hot_workspace_rps"].goal_verdict is Verdict.PASS
    assert found["hot_search_rps"].goal_verdict is Verdict.FAIL
    assert found["hot_search_rps"].verdict is Verdict.NO_FIGURE  # a goal: never the run's verdict


def test_a_hot_path_child_that_fails_fails_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        bench, "run_child", lambda *_, **__: (1, "RuntimeError: wrk printed no rate")
    )
    run = bench.Bench(scale="tiny", targets=load_targets(), out_dir=tmp_path, env={})
    run.figures_dir.mkdir(parents=True)
    with pytest.raises(bench.StepError, match="exited with code 1: RuntimeError: wrk printed"):
        run._hot_path()


@pytest.mark.parametrize(
    "env", [{"HOT_PATH_SECONDS": "0"}, {"HOT_PATH_ROUNDS": "two"}, {"HOT_PATH_ROUNDS": "0"}]
)
def test_bad_hot_path_settings_are_bad_settings(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="HOT_PATH_SECONDS="):
        bench.hot_path_settings(env)
    assert bench.main({**env, "SCALE": "tiny"}) == 2
