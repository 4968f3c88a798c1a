"""``wsbench bench`` (``make bench``, ``python -m reports.bench``): the whole run, one report.

After the targets file is read, the steps of :data:`STEPS` run in order, each timed and shown as it
starts: a database from the provider chain; migrate and load the ``SCALE`` dataset; the service in
its own process; the microbenchmarks (pytest-benchmark, then ``reports.figures``); the Locust
journeys headless in both URL modes, each against a fresh service, with its ``/metrics`` read after
the run; the hot path (``benchmarks.hot_path``: one service process at its limit under ``wrk``,
beside the floor PostgreSQL sets); the browser; the report, ``summary.json`` and one history
line. A step that fails is recorded with its error and the steps that need it are skipped; the
report is written in any case and says where the run stopped. Exit 0 only when every plan target
holds and every step ran (``STRICT=1``: our goals too); otherwise the failures are named and the
exit code is 1 (2: bad settings).

Environment: ``SCALE`` (plan), ``STRICT``, ``TARGETS_FILE``, ``LOAD_RUN_TIME`` (3m per URL mode),
``LOAD_MODES`` (``unified,legacy``; the quick run at ``SCALE=tiny``: ``unified``),
``BENCH_TIMEOUT_S`` (bound of the microbenchmarks, 3600), ``BROWSER`` (0: no browser step),
``HOT_PATH`` (0: no hot path step), ``HOT_PATH_SECONDS`` (5), ``HOT_PATH_ROUNDS`` (3),
``HISTORY_FILE``, ``STORAGE_DIR``,
plus the provider chain's (``DATABASE_URL``, ``DB_PROVIDER``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from fixtures.processes import PROGRESS, ChildError, ServiceProcess, run_child, say
from fixtures.spec import QUICK_SCALE
from reference.settings import child_secrets
from reports.curve import CURVE_FILE, Curve
from reports.environment import ROOT, fingerprint, git_commit, probe_machine
from reports.figures import benchmark_key
from reports.history import (
    INTERRUPTED,
    RunRecord,
    append_run,
    comparable,
    history_path,
    read_history,
)
from reports.report import (
    LOAD_MODES,
    RunData,
    Step,
    StepStatus,
    outcome,
    summary_table,
    write_outputs,
)
from reports.service_metrics import disagreement_lines, parse_url_cache
from reports.targets import SCALE_ORDER, Targets, TargetsError, Verdict, load_targets

COUNT_HEAVY_ASSETS: Final = "select count(*) from assets where user_id = $1"


class StepError(RuntimeError):
    """A step could not do its work; the message is what the report shows."""


def parse_duration(raw: str) -> float:
    """Locust-style durations: ``90``, ``90s``, ``2m``, ``1h30m``."""
    raw = raw.strip()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ValueError(f"not a duration: {raw!r} (examples: 60, 60s, 2m, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def service_metrics_text(service: ServiceProcess) -> str:
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as response:  # noqa: S310
        return str(response.read().decode("utf-8"))


def cache_hit_rate(exposition: str) -> float | None:
    """hits / (hits + misses) of the signed-URL cache, all label values summed."""
    return parse_url_cache(exposition).hit_rate


# --- component files ------------------------------------------------------------------------


def read_component(path: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """``{"figures": {...}, "meta": {...}}`` -> (numeric figures, meta)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
        raise StepError(f"{_rel(path)}: expected {{'figures': {{...}}, 'meta': {{...}}}}")
    figures = {
        str(k): float(v)
        for k, v in data["figures"].items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    meta = data.get("meta")
    return figures, meta if isinstance(meta, dict) else {}


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    """One row of :data:`STEPS`: ``title`` may name ``{scale}`` and ``{load_run_time}``; the
    step is skipped unless every step in ``needs`` succeeded."""

    name: str
    title: str
    action: Callable[[Bench], str | None]
    needs: tuple[str, ...] = ()
    #: Why this run leaves the step out by choice (None: it runs); skipped, not failed.
    left_out: Callable[[Bench], str | None] | None = None


@dataclass
class Bench:
    scale: str
    targets: Targets
    out_dir: Path
    strict: bool = False
    load_run_time: str = "3m"
    bench_timeout_s: float = 3600.0
    remeasure_budget_s: float = 300.0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: Where the latest complete run's index.html and summary.json are copied (None: nowhere).
    published_dir: Path | None = None
    #: ``make bench-scale``'s latest curve, shown in the report when present (None: none).
    curve_file: Path | None = None
    run: RunData = field(init=False)
    dsn: str = ""
    service: ServiceProcess | None = None
    interrupted: bool = False
    #: Set for good by Ctrl-C: the run is recorded as interrupted and publishes nothing.
    was_interrupted: bool = False
    _resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _load_figures: dict[str, tuple[dict[str, float], dict[str, Any]]] = field(default_factory=dict)

    @property
    def load_modes(self) -> tuple[str, ...]:
        """``LOAD_MODES``; by default both URL modes, and the unified one alone in the quick
        run (the legacy baseline is compared, never judged: no target reads it)."""
        default = "unified" if self.scale == QUICK_SCALE else "unified,legacy"
        return parse_load_modes(self.env.get("LOAD_MODES") or default)

    def _mode_left_out(self, mode: str) -> str | None:
        if mode in self.load_modes:
            return None
        quick = " (the quick run's default)" if self.scale == QUICK_SCALE else ""
        return f"LOAD_MODES={','.join(self.load_modes)}{quick}; LOAD_MODES=unified,legacy runs it"

    @property
    def storage_dir(self) -> Path:
        return Path(self.env.get("STORAGE_DIR") or ROOT / ".data" / "storage")

    def __post_init__(self) -> None:
        self.run = RunData(scale=self.scale, targets=self.targets, strict=self.strict)

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    @property
    def logs_dir(self) -> Path:
        return self.out_dir / "logs"

    def step(self, spec: StepSpec) -> Step:
        title = spec.title.format(scale=self.scale, load_run_time=self.load_run_time)
        step = Step(spec.name, title)
        self.run.steps.append(step)
        number = f"[{len(self.run.steps)}/{len(STEPS)}]"
        done = {s.name: s.status for s in self.run.steps}
        missing = [n for n in spec.needs if done.get(n) is not StepStatus.OK]
        if self.interrupted:
            skipped: str | None = "interrupted"
        elif missing:
            skipped = f"needs {', '.join(missing)}"
        else:
            skipped = spec.left_out(self) if spec.left_out is not None else None
        if skipped:
            step.detail = skipped
            say(f"{number} {title}: skipped ({step.detail})")
            return step
        say(f"{number} {title} ...")
        started = time.perf_counter()
        try:
            step.detail = spec.action(self) or ""
            step.status = StepStatus.OK
        except KeyboardInterrupt:
            self.interrupted = self.was_interrupted = True
            step.status, step.error = StepStatus.FAILED, "interrupted (Ctrl-C)"
        except Exception as exc:  # a failed step is reported, the run goes on where it can
            step.status = StepStatus.FAILED
            known = isinstance(exc, StepError | ChildError)
            step.error = str(exc) if known else f"{type(exc).__name__}: {exc}"
        step.seconds = time.perf_counter() - started
        word = "done" if step.status is StepStatus.OK else "FAILED"
        extra = step.detail if step.status is StepStatus.OK else step.error
        say(f"{number} {title}: {word} in {step.seconds:.1f} s{'; ' + extra if extra else ''}")
        return step

    def execute(self) -> int:
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.figures_dir, ignore_errors=True)
        self.figures_dir.mkdir(parents=True)
        self.run.environment = {"machine": probe_machine().as_dict(), "git": git_commit()}
        with self._resources:
            for spec in MEASURE_STEPS:
                self.step(spec)
            self.interrupted = False  # the report is written even after Ctrl-C
        self.run.seconds = time.perf_counter() - started
        self.step(REPORT_STEP)
        self.run.seconds = time.perf_counter() - started
        self._rewrite_after_report()
        return self._finish()

    # --- steps ------------------------------------------------------------------------------

    def _database(self) -> str:
        from fixtures.database import provide_database

        info = self._resources.enter_context(provide_database(self.env))
        self.dsn = info.dsn
        self.run.environment["database"] = info.as_dict()
        self.run.environment["fingerprint"] = fingerprint(
            self.run.environment["machine"], info.server_version
        )
        return f"{info.provider.label}, PostgreSQL {info.server_version}"

    def _dataset(self) -> str:
        from fixtures.generate import heavy_user_id
        from fixtures.prepare import prepare_dataset
        from fixtures.spec import spec_for

        spec = spec_for(self.scale)
        prepared = asyncio.run(prepare_dataset(self.dsn, spec, storage_dir=self.storage_dir))
        self.run.dataset = prepared.as_dict()
        heavy = asyncio.run(_fetch_count(self.dsn, heavy_user_id(spec)))
        figures = {
            "dataset.heavy_assets": float(heavy),
            "dataset.assets": float(prepared.load.assets),
            "dataset.load_rows_per_s": prepared.load.rows_per_second,
        }
        self._write_component("dataset", figures, prepared.as_dict())
        self.dataset_json.parent.mkdir(parents=True, exist_ok=True)
        self.dataset_json.write_text(json.dumps(prepared.as_dict()), encoding="utf-8")
        self.run.figures.update(figures)
        return f"{prepared.load.assets:,} assets, heavy user {heavy:,}"

    def _start_unified(self) -> str:
        return f"listening on {self._start_service('unified').url}"

    def _pytest(
        self, targets: Sequence[str], out: Path, log_name: str, timeout_s: float, **env: str
    ) -> None:
        """``pytest TARGETS --benchmark-json=OUT`` on this run's database, progress echoed."""
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider",
            f"--benchmark-json={out}",
        ]  # fmt: skip
        budget = env.get("BENCH_ROUND_BUDGET_S") or self.env.get("BENCH_ROUND_BUDGET_S")
        if budget:
            # The same budget for pytest-benchmark's own calibration (plain ``benchmark(f)``
            # calls) as for ours (``rounds_for``); its minimum rounds stay.
            command.append(f"--benchmark-max-time={budget}")
        code, tail = run_child(
            command,
            env={
                **self.env,
                "DATABASE_URL": self.dsn,
                "SCALE": self.scale,
                **self._dataset_env(),
                **env,
            },
            cwd=ROOT,
            log_path=self.logs_dir / log_name,
            timeout_s=timeout_s,
            echo_only=PROGRESS,
        )
        if code != 0 or not out.exists():
            raise StepError(f"pytest exited with code {code}: {_last_line(tail)}")

    @property
    def dataset_json(self) -> Path:
        return self.out_dir / "raw" / "dataset.json"

    def _dataset_env(self) -> dict[str, str]:
        """The benchmarks copy this run's prepared database instead of building the scale
        again (``benchmarks/conftest.py``); it runs before the service step, so nothing is
        connected to it."""
        done = {s.name: s.status for s in self.run.steps}
        if done.get("dataset") is not StepStatus.OK or self.service is not None:
            return {}
        return {
            "BENCH_DATASET_URL": self.dsn,
            "BENCH_DATASET_JSON": str(self.dataset_json),
            "STORAGE_DIR": str(self.storage_dir),
        }

    def _benchmarks(self) -> str:
        raw = self.out_dir / "raw" / "benchmarks.json"
        budget = {}
        if self.scale == QUICK_SCALE and not self.env.get("BENCH_ROUND_BUDGET_S"):
            budget["BENCH_ROUND_BUDGET_S"] = str(QUICK_ROUND_BUDGET_S)
        self._pytest(["benchmarks"], raw, "benchmarks.log", self.bench_timeout_s, **budget)
        return f"full tables in {_rel(self.logs_dir / 'benchmarks.log')}"

    def _remeasure(self) -> str:
        """Benchmarks behind an inconclusive target run again, with a larger timing budget, and
        their new rounds replace the old ones: a figure too close to call gets more data."""
        raw = self.out_dir / "raw" / "benchmarks.json"
        bench_json = json.loads(raw.read_text(encoding="utf-8"))
        unsure = [
            r
            for r in self.targets.evaluate(self.run.figures, self.scale)
            if r.verdict is Verdict.INCONCLUSIVE
            or (self.strict and r.goal_verdict is Verdict.INCONCLUSIVE)
        ]
        files = benchmark_files(bench_json, [r.target.metric for r in unsure])
        if not files:
            return "no inconclusive benchmark target"
        again = self.out_dir / "raw" / "remeasure.json"
        self._pytest(
            files,
            again,
            "remeasure.log",
            self.remeasure_budget_s,
            BENCH_ROUND_BUDGET_S=str(REMEASURE_ROUND_BUDGET_S),
        )
        merged = replace_benchmarks(bench_json, json.loads(again.read_text(encoding="utf-8")))
        raw.write_text(json.dumps(merged), encoding="utf-8")
        self._bench_figures()
        ids = ", ".join(r.target.id for r in unsure)
        return f"{len(files)} file(s) for {ids}"

    def _bench_figures(self) -> str:
        raw = self.out_dir / "raw" / "benchmarks.json"
        target = self.figures_dir / "bench.json"
        command = [sys.executable, "-m", "reports.figures", str(raw), "--out", str(target)]
        code, tail = run_child(
            command,
            env=self.env,
            cwd=ROOT,
            log_path=self.logs_dir / "figures.log",
            timeout_s=300,
            echo=None,
        )
        if code != 0:
            raise StepError(f"reports.figures exited with code {code}: {_last_line(tail)}")
        figures, meta = read_component(target)
        self.run.figures.update(figures)
        self.run.meta["bench"] = meta
        return f"{len(figures)} figures"

    def _load(self, mode: str) -> str:
        seconds = parse_duration(self.load_run_time)
        key = "load" if mode == "unified" else f"load_{mode}"
        service = self.service
        if service is None or service.mode != mode:
            service = self._start_service(mode)
        figures_file = self.figures_dir / "load.json"
        env = {
            **self.env,
            "LOAD_OUT": str(self.out_dir),
            "LOCUST_RUN_TIME": self.load_run_time,
            "URL_MODE": mode,
            "SCALE": self.scale,
            "TARGETS_FILE": str(self.targets.path),
        }
        command = [sys.executable, "-m", "loadtests", "--host", service.url, "--modes", mode]
        command += ["--scale", self.scale]
        figures_file.unlink(missing_ok=True)
        code, tail = run_child(
            command,
            env=env,
            cwd=ROOT,
            log_path=self.logs_dir / f"{key}.log",
            timeout_s=seconds + 180,
        )
        metrics = service_metrics_text(service)
        (self.logs_dir / f"metrics-{mode}.txt").write_text(metrics, encoding="utf-8")
        service.stop()
        if not figures_file.exists():
            raise StepError(f"the load runner wrote no figures (exit {code}): {_last_line(tail)}")
        figures, meta = read_component(figures_file)
        figures = {k: v for k, v in figures.items() if k.startswith(f"{key}.")}
        if not figures:
            raise StepError(f"the load runner wrote no {key}.* figures (exit {code})")
        rate = cache_hit_rate(metrics)
        if rate is not None:
            figures.setdefault(f"{key}.url_cache_hit_rate", rate)
        component = dict(meta.get(key) or {})
        series_file = self.out_dir / f"{key}_series.json"
        if series_file.exists():
            series = json.loads(series_file.read_text(encoding="utf-8"))
            component["timeseries"] = series.get("series") or []
            component["users"] = series.get("users") or []
            component["histograms"] = series.get("histograms") or {}
        self.run.figures.update(figures)
        self.run.meta[key] = component
        self._load_figures[key] = (figures, meta.get(key) or {})
        self._write_component(
            "load",
            {k: v for f, _ in self._load_figures.values() for k, v in f.items()},
            {k: m for k, (_, m) in self._load_figures.items()},
        )
        if code != 0:
            # The runner exits non-zero when a threshold breaks; its figures still count.
            return f"{len(figures)} figures; runner exit code {code} (a threshold breached)"
        return f"{len(figures)} figures"

    def _start_service(self, mode: str) -> ServiceProcess:
        """A fresh service in ``mode``, replacing the one running; stopped before the database
        at the end of the run."""
        if self.service is not None:
            self.service.stop()
        log_path = self.logs_dir / f"service-{mode}.log"
        self.service = ServiceProcess(self.dsn, mode, self.storage_dir, log_path, env=self.env)
        self._resources.callback(self.service.stop)
        self.service.start()
        return self.service

    def _hot_path_left_out(self) -> str | None:
        """``HOT_PATH=0``, the quick run unless ``HOT_PATH=1`` (its throughput rounds would add
        more than half to its two minutes), or no ``wrk`` on the run's ``PATH``: the hot path
        targets then read not applicable."""
        wanted = self.env.get("HOT_PATH", "")
        if wanted in ("0", "no", "off"):
            return "HOT_PATH=0 (the hot path targets read not applicable)"
        if self.scale == QUICK_SCALE and wanted != "1":
            return (
                f"SCALE={QUICK_SCALE}, the quick run's default (HOT_PATH=1 runs it); the hot path"
                " targets read not applicable"
            )
        if shutil.which("wrk", path=self.env.get("PATH")) is None:
            return (
                "wrk is not installed (Debian: apt-get install wrk); the hot path targets read"
                " not applicable"
            )
        return None

    def _hot_path(self) -> str:
        """``python -m benchmarks.hot_path`` on this run's database and stored files: its own
        single-process service, so the load steps' service is stopped first."""
        seconds, rounds = hot_path_settings(self.env)
        if self.service is not None:
            self.service.stop()
            self.service = None
        found = self.figures_dir / "hot_path.json"
        found.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "benchmarks.hot_path", self.dsn, "--scale", self.scale,
            "--seconds", f"{seconds:g}", "--rounds", str(rounds), "--json", str(found),
        ]  # fmt: skip
        # Per route: a 3 s warm-up, then each round wrk and the floor, each for ``seconds``.
        budget = HOT_PATH_ROUTES * (3 + rounds * (2 * seconds + 5)) + 120
        code, tail = run_child(
            command,
            env={**self.env, "STORAGE_DIR": str(self.storage_dir)},
            cwd=ROOT,
            log_path=self.logs_dir / "hot_path.log",
            timeout_s=budget,
            echo_only=PROGRESS,
        )
        if code != 0 or not found.exists():
            raise StepError(f"benchmarks.hot_path exited with code {code}: {_last_line(tail)}")
        figures, meta = read_component(found)
        self.run.figures.update(figures)
        self.run.meta["hot"] = meta
        rates = ", ".join(
            f"{route} {figures[key]:,.0f} req/s"
            for route in meta.get("routes") or {}
            if (key := f"hot.{route}.requests_per_s") in figures
        )
        return f"{rates} (median of {rounds} rounds of {seconds:g} s)"

    def _browser_left_out(self) -> str | None:
        """``BROWSER=0``; or a scale above the browser targets' ``max_scale`` (targets.toml: the
        pre-plan page reads and signs the whole list, hours a round at 1,000,000 assets),
        unless ``BROWSER=1`` asks for it anyway."""
        wanted = self.env.get("BROWSER", "")
        if wanted in ("0", "no", "off"):
            return "BROWSER=0 (the browser targets read not measured)"
        bounds = [
            t.max_scale
            for t in self.targets.targets
            if t.metric.startswith("browser.") and t.max_scale is not None
        ]
        if wanted == "1" or not bounds or self.scale not in SCALE_ORDER:
            return None
        largest = min(bounds, key=SCALE_ORDER.index)
        if SCALE_ORDER.index(self.scale) > SCALE_ORDER.index(largest):
            return (
                f"SCALE={self.scale}: the pre-plan page reads and signs the whole list, hours a"
                f" round; the browser targets are measured up to SCALE={largest} (BROWSER=1"
                " runs it anyway)"
            )
        return None

    def _browser(self) -> str:
        """Both pages in headless Chromium, as a child process like every other measuring
        step (``python -m benchmarks.browser`` on this run's database and stored files).
        ``BROWSER=0`` leaves it out: the browser targets then read "not measured"."""
        command = [
            sys.executable, "-m", "benchmarks.browser", "--dsn", self.dsn,
            "--scale", self.scale, "--out", str(self.out_dir),
        ]  # fmt: skip
        env = {**self.env, "STORAGE_DIR": str(self.storage_dir)}
        code, tail = run_child(
            command,
            env=env,
            cwd=ROOT,
            log_path=self.logs_dir / "browser.log",
            timeout_s=self.bench_timeout_s,
            echo_only=PROGRESS,
        )
        found = self.figures_dir / "browser.json"
        if not found.exists():
            raise StepError(f"the browser step wrote no figures (exit {code}): {_last_line(tail)}")
        figures, meta = read_component(found)
        self.run.figures.update(figures)
        self.run.meta["browser"] = meta
        if not meta.get("measured"):
            raise StepError(f"browser targets not measured: {meta.get('reason')}")
        return f"{len(figures)} figures in {meta.get('seconds', 0):.0f} s"

    def _report(self) -> str:
        fp = str(self.run.environment.get("fingerprint", ""))
        plans = self.figures_dir / "plans.json"
        if plans.exists():
            self.run.plans = json.loads(plans.read_text(encoding="utf-8"))
        self.run.curve = self._latest_curve()
        path = history_path(self.env)
        records = read_history(path)
        self.run.history = comparable(records, fp, self.scale)
        write_outputs(self.run, self.out_dir)
        verdict = INTERRUPTED if self.was_interrupted else outcome(self.run).verdict.value
        git = self.run.environment.get("git", {})
        regression = self._regression_check(records, fp)
        append_run(
            RunRecord(
                time=self.run.started,
                commit=str(git.get("commit", "")),
                fingerprint=fp,
                scale=self.scale,
                verdict=verdict,
                figures=dict(self.run.figures),
                machine=self.run.environment.get("machine", {}),
                source="bench",
                regression=regression.regression,
                baseline=regression.baseline,
                rounds=regression.rounds,
            ),
            path,
        )
        return (
            f"{_rel(self.out_dir / 'index.html')}; history {_rel(path)} "
            f"(regression check, unconfirmed: {regression.regression})"
        )

    def _latest_curve(self) -> Curve | None:
        """The latest scale curve, copied into this run's folder so that its report keeps
        showing what it showed; its figures stay out of this run's (another measurement)."""
        if self.curve_file is None or not self.curve_file.exists():
            return None
        kept = self.figures_dir / "curve.json"
        shutil.copyfile(self.curve_file, kept)
        try:
            figures, meta = read_component(kept)
        except (StepError, ValueError) as exc:
            say(f"scale curve {_rel(self.curve_file)} not shown: {exc}")
            return None
        written = datetime.fromtimestamp(self.curve_file.stat().st_mtime, UTC)
        return Curve(figures, meta, written.isoformat(timespec="seconds"))

    def _regression_check(self, records: list[RunRecord], fp: str) -> RunRecord:
        """The gate's regression check of the microbenchmarks' raw rounds against the history's
        baseline, so that a ``make bench`` line can be the gate's baseline too."""
        from reports import gate

        raw = self.out_dir / "raw" / "benchmarks.json"
        done = {s.name: s.status for s in self.run.steps}
        if done.get("benchmarks") is not StepStatus.OK or not raw.exists():
            return RunRecord("", "", fp, self.scale, "", {})
        bench_json = json.loads(raw.read_text(encoding="utf-8"))
        bench_json["workspace_bench"] = {"fingerprint": fp}
        result = gate.judge(bench_json, self.targets, records)
        if result.exit is gate.Exit.REGRESSION:
            # Unconfirmed: `make gate` re-measures a suspect before it calls a regression; this
            # line only keeps the run out of the gate's baselines.
            say(f"possible regression, not re-measured (make gate confirms): {result.message}")
        return gate.history_record(bench_json, result, {}, source="bench")

    def _rewrite_after_report(self) -> None:
        """The report step's own status and time belong in the files too; then a complete run
        becomes the latest (``reports/out/index.html`` and ``summary.json``), and an
        interrupted one leaves the previous complete report where it was."""
        with contextlib.suppress(OSError):
            write_outputs(self.run, self.out_dir)
            if not self.was_interrupted and self.published_dir is not None:
                publish(self.out_dir, self.published_dir)

    def _write_component(
        self, name: str, figures: Mapping[str, float], meta: Mapping[str, Any]
    ) -> None:
        path = self.figures_dir / f"{name}.json"
        path.write_text(json.dumps({"figures": figures, "meta": meta}, indent=2, default=str))

    def disagreements(self) -> list[str]:
        """Where Locust's p95 and the service's own histogram disagree, per URL mode."""
        lines = []
        for mode, key in LOAD_MODES:
            found = self.run.meta.get(key, {}).get("service_p95") or {}
            lines += [
                f"client vs service ({mode}): {line}"
                for line in disagreement_lines(found.get("groups") or {})
            ]
        return lines

    def _finish(self) -> int:
        result = outcome(self.run)
        print(summary_table(self.run))
        print()
        for step in self.run.steps:
            mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}[step.status.value]
            print(f"  {step.name:<14} {mark:<8} {step.seconds:7.1f} s  {step.error or step.detail}")
        print()
        if result.verdict.value == "pass":
            goals = "all our goals met" if result.goals_met else "some of our goals not yet met"
            print(f"PASS: every plan target holds ({goals}); {self.run.seconds:.0f} s")
        else:
            print(f"FAIL ({len(result.failures)}):")
            for failure in result.failures:
                print(f"  - {failure}")
        for line in self.disagreements():
            print(line)
        if self.run.curve is not None:
            print(f"scale curve, in the report: {self.run.curve.provenance()[0]}")
        print(f"report: {_rel(self.out_dir / 'index.html')}")
        if self.was_interrupted:
            print("interrupted: recorded as such; the previous complete report stays the latest")
            return 130
        return result.exit_code


MEASURE_STEPS: Final = (
    StepSpec("database", "database from the provider chain", Bench._database),
    StepSpec("dataset", "migrate and load the {scale} dataset", Bench._dataset, ("database",)),
    StepSpec("benchmarks", "microbenchmarks (pytest-benchmark)", Bench._benchmarks, ("database",)),
    StepSpec(
        "bench_figures",
        "benchmark figures (reports.figures)",
        Bench._bench_figures,
        ("benchmarks",),
    ),
    StepSpec(
        "remeasure",
        "re-measure the benchmarks of inconclusive targets",
        Bench._remeasure,
        ("bench_figures",),
    ),
    # After the benchmarks, which copy the dataset's database while nothing is connected to it.
    StepSpec("service", "start the service (URL_MODE=unified)", Bench._start_unified, ("dataset",)),
    StepSpec(
        "load_unified",
        "load test, URL_MODE=unified, {load_run_time}",
        lambda bench: bench._load("unified"),
        ("service",),
        lambda bench: bench._mode_left_out("unified"),
    ),
    StepSpec(
        "load_legacy",
        "load test, URL_MODE=legacy, {load_run_time}",
        lambda bench: bench._load("legacy"),
        ("dataset",),
        lambda bench: bench._mode_left_out("legacy"),
    ),
    # After the load steps: its own single-process service, alone on the machine.
    StepSpec(
        "hot_path",
        "hot path: one service process under wrk, beside the PostgreSQL floor",
        Bench._hot_path,
        ("dataset",),
        lambda bench: bench._hot_path_left_out(),
    ),
    StepSpec(
        "browser",
        "browser: both pages in headless Chromium",
        Bench._browser,
        ("dataset",),
        lambda bench: bench._browser_left_out(),
    ),
)
#: After the database and the service are stopped.
REPORT_STEP: Final = StepSpec("report", "report, summary.json and history", Bench._report)
STEPS: Final = (*MEASURE_STEPS, REPORT_STEP)


REMEASURE_ROUND_BUDGET_S: Final = 12.0
#: The quick run (``make bench SCALE=tiny``, about two minutes) gives each benchmark a quarter
#: of the usual timing budget beyond its minimum rounds (BENCH_ROUND_BUDGET_S overrides); an
#: interval left too wide to decide a target is re-measured like any other.
QUICK_ROUND_BUDGET_S: Final = 0.25


#: ``benchmarks.hot_path``'s routes (workspace page, text search), for the step's time bound.
HOT_PATH_ROUTES: Final = 2


def hot_path_settings(env: Mapping[str, str]) -> tuple[float, int]:
    """``HOT_PATH_SECONDS`` (of wrk, then of the floor, each round; 5) and ``HOT_PATH_ROUNDS``
    (per route; 3)."""
    raw_seconds = env.get("HOT_PATH_SECONDS") or "5"
    raw_rounds = env.get("HOT_PATH_ROUNDS") or "3"
    try:
        seconds, rounds = float(raw_seconds), int(raw_rounds)
    except ValueError:
        seconds, rounds = 0.0, 0
    if seconds < 1 or rounds < 1:
        raise ValueError(
            f"HOT_PATH_SECONDS={raw_seconds!r}, HOT_PATH_ROUNDS={raw_rounds!r}: a number of"
            " seconds and a count of rounds, each at least 1"
        )
    return seconds, rounds


def parse_load_modes(raw: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in raw.split(",") if m.strip())


def benchmark_files(bench_json: Mapping[str, Any], metrics: Sequence[str]) -> list[str]:
    """The benchmark files whose benchmarks give ``metrics`` (a pair's two sides, a median, a
    figure a benchmark computed), whole files, in their order: pairs depend on it."""
    wanted = set(metrics)
    files = []
    for bench in bench_json.get("benchmarks") or []:
        extra = bench.get("extra_info") or {}
        gives = {f"bench.{benchmark_key(bench)}.median_s", *(extra.get("figures") or {})}
        claim = extra.get("claim")
        if claim:
            gives |= {f"saving.{claim}", f"speedup.{claim}"}
        rate = extra.get("rate_figure")
        if rate:
            gives.add(str(rate))
        name = str(bench.get("fullname", "")).split("::", 1)[0]
        if gives & wanted and name and name not in files:
            files.append(name)
    return files


def replace_benchmarks(bench_json: Mapping[str, Any], again: Mapping[str, Any]) -> dict[str, Any]:
    """``bench_json`` with every benchmark measured ``again`` replaced by its new measurement."""
    fresh = {b["fullname"]: b for b in again.get("benchmarks") or []}
    merged = dict(bench_json)
    merged["benchmarks"] = [
        {**fresh[b["fullname"]], "extra_info": {**fresh[b["fullname"]].get("extra_info", {}),
                                                "remeasured": True}}
        if b["fullname"] in fresh
        else b
        for b in bench_json.get("benchmarks") or []
    ]  # fmt: skip
    return merged


RUNS_DIR: Final = ROOT / "reports" / "out" / "runs"
PUBLISHED: Final = ("index.html", "summary.json")


def run_dir(runs: Path, started: datetime, commit: str) -> Path:
    """``runs/<UTC time>-<commit>/``: every run its own folder, never over another's."""
    name = f"{started:%Y%m%dT%H%M%SZ}-{commit[:10] or 'nocommit'}"
    path, n = runs / name, 1
    while path.exists():
        n += 1
        path = runs / f"{name}-{n}"
    return path


def publish(run: Path, top: Path) -> None:
    """Make ``run`` the latest complete run: its report and summary at ``top``, and a pointer."""
    for name in PUBLISHED:
        source = run / name
        if source.exists():
            tmp = top / f".{name}.tmp"
            shutil.copyfile(source, tmp)
            tmp.replace(top / name)
    (top / "latest").write_text(f"{run.relative_to(top)}\n", encoding="utf-8")


async def _fetch_count(dsn: str, user_id: Any) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(COUNT_HEAVY_ASSETS, user_id))
    finally:
        await conn.close()


def _last_line(tail: str) -> str:
    lines = [line for line in tail.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


@contextlib.contextmanager
def _line_buffered() -> Iterator[None]:
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    yield


def main(env: Mapping[str, str] = os.environ) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        targets = load_targets(Path(env["TARGETS_FILE"]) if env.get("TARGETS_FILE") else None)
    except (TargetsError, OSError) as exc:
        say(f"cannot read the targets file: {exc}")
        return 2
    load_run_time = env.get("LOAD_RUN_TIME", "3m")
    try:
        parse_duration(load_run_time)
        bench_timeout = float(env.get("BENCH_TIMEOUT_S", "3600"))
        hot_path_settings(env)
    except ValueError as exc:
        say(f"bad setting: {exc}")
        return 2
    from fixtures.spec import SCALES

    modes = parse_load_modes(env.get("LOAD_MODES") or "unified")
    if not modes or not set(modes) <= {"unified", "legacy"}:
        say(f"LOAD_MODES={env.get('LOAD_MODES')!r}: unified, legacy or both, comma-separated")
        return 2

    scale = env.get("SCALE", "plan")
    if scale not in SCALES:
        say(f"SCALE={scale!r}: choose one of {', '.join(SCALES)}")
        return 2
    commit = str(git_commit().get("commit") or "")
    bench = Bench(
        scale=scale,
        targets=targets,
        out_dir=run_dir(RUNS_DIR, datetime.now(UTC), commit),
        published_dir=RUNS_DIR.parent,
        curve_file=CURVE_FILE,
        strict=env.get("STRICT", "") not in ("", "0"),
        load_run_time=load_run_time,
        bench_timeout_s=bench_timeout,
        # One set of secrets for the run: the service and the load generator's tokens agree.
        env={**env, **child_secrets(env)},
    )
    say(f"make bench: scale {bench.scale}, targets {targets.path}, load {load_run_time} per mode")
    with _line_buffered():
        return bench.execute()


if __name__ == "__main__":
    sys.exit(main())
