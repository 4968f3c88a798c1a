"""Exact percentiles and k6-style thresholds, wired into Locust's events.

Every response time goes into a per-second histogram (reports.latency). Workers ship theirs to
the master with each stats report (``report_to_master`` / ``worker_report``), so the master's
percentiles are exact across processes; each worker also writes what it shipped (``workers/`` in
the output directory) and the master the merged whole, so the two can be checked to agree. The
master (or the only process) checks the thresholds over a sliding window while the run goes,
optionally aborts on a sustained breach, and at the end prints the table, reads the service's
URL-cache counters, writes the figures and the time series, and sets the exit code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import gevent
from flask import request as flask_request
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests._config import LoadSettings
from reports import uncertainty
from reports.latency import WindowedStats
from reports.service_metrics import (
    UrlCacheCounters,
    compare_with_service,
    disagreement_lines,
    fetch_metrics,
    fetch_url_cache,
    parse_url_cache,
)
from reports.targets import Targets, load_targets
from reports.thresholds import (
    Check,
    Outcome,
    breaches,
    cache_hit_as_check,
    cache_hit_check,
    evaluate,
    format_table,
    load_figures,
)
from reports.uncertainty import Estimate

log = logging.getLogger("loadtests")

JOURNEY: Final = "JOURNEY"
JOURNEYS: Final = frozenset({"open_workspace"})
WIRE_KEY: Final = "exact_stats"
CHECK_EVERY_S: Final = 2.0
EXIT_BREACH: Final = 1
EXIT_NO_REQUESTS: Final = 3
TAB_KEY: Final = "thresholds"
#: At the end the master asks every worker to stop its users and send what it has not sent yet,
#: and waits for all answers: Locust's own final report races its shutdown (0.5 s).
FLUSH: Final = "exact_stats_flush"
FINAL: Final = "exact_stats_final"
FLUSH_TIMEOUT_S: Final = 15.0


@dataclass
class RampResult:
    steps: list[dict[str, Any]] = field(default_factory=list)
    best_users: int | None = None
    best_span: tuple[int, int] | None = None
    breached_at: int | None = None


@dataclass
class LoadState:
    settings: LoadSettings = field(default_factory=LoadSettings.from_env)
    stats: WindowedStats = field(default_factory=lambda: WindowedStats(journeys=JOURNEYS))
    #: A worker's copy of everything it sent to the master.
    shipped: WindowedStats = field(default_factory=lambda: WindowedStats(journeys=JOURNEYS))
    targets: Targets | None = None
    started: float | None = None
    cache_before: UrlCacheCounters | None = None
    #: The service's ``/metrics`` at the end of the warm-up: the start of its histogram's window.
    metrics_before: str | None = None
    #: The busiest load-generator process's CPU (share of one core), one sample per check.
    cpu: list[float] = field(default_factory=list)
    #: Users running, by second: the load's shape for the report.
    users: dict[int, int] = field(default_factory=dict)
    live: list[Check] = field(default_factory=list)
    #: What the Thresholds tab shows above the checks: the window's length or the whole run.
    live_title: str = ""
    stopped: float | None = None
    breach_since: float | None = None
    aborted: str | None = None
    ramp: RampResult | None = None
    skipped: list[str] = field(default_factory=list)
    reported: bool = False
    flushed: set[str] = field(default_factory=set)


STATE = LoadState()


def now_second() -> int:
    return int(time.time())


# --- which journeys can run: the service's own OpenAPI document ---------------------------------


def _normalise(path: str) -> str:
    parts = ["{}" if p.startswith("{") and p.endswith("}") else p for p in path.split("/")]
    return "/".join(parts)


def available_operations(host: str) -> set[tuple[str, str]]:
    url = host.rstrip("/") + "/openapi.json"
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"--host must be an http(s) URL, not {host!r}")
    with urllib.request.urlopen(url, timeout=15) as resp:  # noqa: S310 (scheme checked)
        document = json.loads(resp.read())
    return {
        (method.upper(), _normalise(path))
        for path, item in document.get("paths", {}).items()
        for method in item
    }


def keep_available_journeys(environment: Environment) -> None:
    host = environment.host or ""
    try:
        operations = available_operations(host)
    except OSError as exc:
        raise SystemExit(f"cannot read {host}/openapi.json: {exc}") from None
    kept = []
    for user_class in environment.user_classes:
        needed = getattr(user_class, "endpoints", ())
        missing = [f"{m} {p}" for m, p in needed if (m, _normalise(p)) not in operations]
        if missing:
            message = f"journey {user_class.__name__} skipped: {', '.join(missing)} not served"
            STATE.skipped.append(message)
            log.warning(message)
        else:
            kept.append(user_class)
    if not kept:
        raise SystemExit("no journey can run: none of their endpoints is in /openapi.json")
    environment.user_classes[:] = kept


# --- events ---------------------------------------------------------------------------------------


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    STATE.targets = load_targets(STATE.settings.targets_file)
    if environment.host:
        keep_available_journeys(environment)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(FLUSH, _flush_worker)
        return
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(FINAL, _absorb_final)
    gevent.spawn(_watch, environment)
    if environment.web_ui is not None:
        _extend_web_ui(environment)


@events.request.add_listener
def on_request(
    request_type: str, name: str, response_time: float, exception: Any = None, **_: Any
) -> None:
    STATE.stats.record(now_second(), name, response_time or 0.0, exception is not None)


@events.report_to_master.add_listener
def on_report_to_master(data: dict[str, Any], **_: Any) -> None:
    wire = STATE.stats.drain()
    STATE.shipped.absorb(wire)
    data[WIRE_KEY] = wire


@events.worker_report.add_listener
def on_worker_report(data: dict[str, Any], **_: Any) -> None:
    STATE.stats.absorb(data.get(WIRE_KEY, []))


def _flush_worker(environment: Environment, msg: Any, **_: Any) -> None:
    runner = environment.runner
    if runner is None:
        return
    runner.stop()
    wire = STATE.stats.drain()
    STATE.shipped.absorb(wire)
    runner.send_message(FINAL, wire)


def _absorb_final(environment: Environment, msg: Any, **_: Any) -> None:
    STATE.stats.absorb(msg.data or [])
    STATE.flushed.add(msg.node_id)


@events.test_stop.add_listener
def flush_workers(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    workers = {client.id for client in runner.clients.all}
    STATE.flushed.clear()
    runner.send_message(FLUSH)
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while workers - STATE.flushed and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if missing := workers - STATE.flushed:
        log.warning("no final exact stats from worker(s) %s: figures may miss their last seconds",
                    ", ".join(sorted(missing)))  # fmt: skip


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    STATE.stats.clear()
    STATE.cpu.clear()
    STATE.users.clear()
    STATE.shipped.clear()
    STATE.started = time.time()
    STATE.breach_since = None
    STATE.aborted = None
    STATE.reported = False
    STATE.cache_before = None
    STATE.metrics_before = None
    STATE.stopped = None
    STATE.live_title = ""
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    gevent.spawn(_cache_after_warmup, environment.host, warmup_s())


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    """Stopped (from the web UI, or at the end): the tab shows the whole run's verdict, over
    the measured seconds only, not the idle time after Stop."""
    if isinstance(environment.runner, WorkerRunner) or STATE.started is None:
        return
    STATE.stopped = time.time()
    targets = STATE.targets
    if targets is None:
        return
    first, last = measured_from(), int(STATE.stopped)
    if last <= first:
        first = int(STATE.started)
    seconds = max(last - first, 1)
    checks = evaluate(targets.thresholds, STATE.stats.span(first, last - 1), seconds)
    checks += _cache_checks(environment.host)
    STATE.live = checks
    broken = breaches(checks)
    verdict = f"FAIL: {len(broken)} breached" if broken else "PASS: every threshold met"
    STATE.live_title = f"whole run, {seconds} s after the warm-up: {verdict}"


def warmup_s() -> float:
    return STATE.targets.warmup_s if STATE.targets else 0.0


def measured_from() -> int:
    """The first second that counts: the run's start plus the declared warm-up."""
    started = STATE.started if STATE.started is not None else time.time()
    return int(started + warmup_s())


def _cache_after_warmup(host: str, delay_s: float) -> None:
    """The cache counters once the warm-up is over, so the hit rate leaves the cold start out."""
    gevent.sleep(delay_s)
    try:
        STATE.metrics_before = fetch_metrics(host)
        STATE.cache_before = parse_url_cache(STATE.metrics_before)
    except OSError as exc:
        log.warning("cannot read %s/metrics after the warm-up: %s", host, exc)


def _cache_checks(host: str | None) -> list[Check]:
    """The URL-cache hit rate since the warm-up, as a row of the checks (none without it)."""
    targets = STATE.targets
    if not host or targets is None or STATE.cache_before is None:
        return []
    try:
        counters = fetch_url_cache(host) - STATE.cache_before
    except OSError:
        return []
    result = cache_hit_check(targets, counters.hit_rate_ci)
    return [] if result is None else [cache_hit_as_check(result)]


def generator_cpu(runner: Any) -> float | None:
    """The busiest load-generating process's CPU, as a share of one core."""
    if isinstance(runner, MasterRunner):
        usages = [float(w.cpu_usage) for w in runner.clients.values()]
    else:
        usages = [float(getattr(runner, "current_cpu_usage", 0.0))]
    return max(usages) / 100 if usages else None


@events.reset_stats.add_listener
def on_reset_stats(**_: Any) -> None:
    STATE.stats.clear()
    STATE.shipped.clear()
    STATE.started = time.time()


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        write_worker_part(environment.runner)
        return
    if STATE.started is None or STATE.reported:
        return
    STATE.reported = True
    final_report(environment)


# --- during the run -------------------------------------------------------------------------------


def window_checks(now: int) -> list[Check]:
    """Thresholds over the last ``window_s`` whole seconds (rates once a full window exists)."""
    targets = STATE.targets
    if targets is None or STATE.started is None:
        return []
    window = int(targets.window_s)
    if now <= measured_from():
        return []
    if STATE.stopped is not None:
        now = min(now, int(STATE.stopped))
    first = max(now - window, measured_from())
    seconds = max(now - first, 1)
    full = now - measured_from() >= window
    return evaluate(targets.thresholds, STATE.stats.span(first, now - 1), seconds, rates=full)


def _watch(environment: Environment) -> None:
    while True:
        gevent.sleep(CHECK_EVERY_S)
        runner = environment.runner
        if runner is None or STATE.started is None or runner.state not in ("spawning", "running"):
            continue
        cpu = generator_cpu(runner)
        if cpu is not None:
            STATE.cpu.append(cpu)
        now = now_second()
        STATE.users[now] = int(runner.user_count)
        STATE.live = window_checks(now) + _cache_checks(environment.host)
        window = int(STATE.targets.window_s) if STATE.targets else 0
        STATE.live_title = f"last {window} s" if now > measured_from() else "warming up"
        broken = breaches(STATE.live)
        if not broken:
            if STATE.breach_since is not None:
                log.info("thresholds met again over the last window")
            STATE.breach_since = None
            continue
        if STATE.breach_since is None:
            STATE.breach_since = now
            log.warning(
                "threshold breach over the window: %s", "; ".join(_short(c) for c in broken)
            )
        abort_after = STATE.targets.abort_on_breach_s if STATE.targets else 0
        if abort_after > 0 and now - STATE.breach_since >= abort_after:
            STATE.aborted = f"aborted after a breach lasting {now - STATE.breach_since} s"
            log.error(STATE.aborted)
            runner.quit()
            return


def _short(check: Check) -> str:
    measured = "-" if check.measured is None else f"{check.measured:.4g}"
    return f"{check.label} (measured {measured})"


# --- the end ----------------------------------------------------------------------------------


def _measured_span(started: float) -> tuple[int, int]:
    """The seconds that count: after the warm-up (or the ramp's best step), up to now."""
    first, last = int(started), now_second()
    if last - measured_from() >= 1:
        first = measured_from()
    ramp = STATE.ramp
    if ramp is not None and ramp.best_span is not None:
        first, last = ramp.best_span
    return first, last


def _cache_figures(metrics: str | None, prefix: str) -> tuple[Estimate | None, dict[str, float]]:
    """The URL-cache hit rate since the warm-up, and per cache level, from ``/metrics``."""
    if metrics is None:
        return None, {}
    counters = parse_url_cache(metrics)
    if STATE.cache_before is not None:
        counters = counters - STATE.cache_before
    log.info("url cache: %d hits, %d misses", counters.hits, counters.misses)
    levels = {
        f"{prefix}.url_cache_{name}_hit_rate": level.hit_rate
        for name, level in counters.levels.items()
        if level.hit_rate is not None
    }
    return counters.hit_rate_ci, levels


def _metrics_at_end(host: str | None) -> str | None:
    if not host:
        return None
    try:
        return fetch_metrics(host)
    except OSError as exc:
        log.warning("cannot read %s/metrics: %s", host, exc)
        return None


def _service_p95(figures: dict[str, float], prefix: str, metrics: str | None) -> dict[str, Any]:
    """The client's p95 per group beside the service's own histogram over the same seconds
    (after the warm-up; since the service started when the warm-up's scrape is missing),
    printed where they disagree. A ramp's figures are one step's seconds: no comparison."""
    if metrics is None or STATE.ramp is not None:
        return {}
    before = STATE.metrics_before
    groups = compare_with_service(figures, prefix, metrics, before)
    for line in disagreement_lines(groups):
        print(f"client and service disagree: {line}", flush=True)
    window = "since the service started" if before is None else "after the warm-up"
    return {"window": window, "groups": groups}


def _verdict(environment: Environment, checks: list[Check], total: int) -> None:
    broken = breaches(checks)
    if total == 0:
        environment.process_exit_code = EXIT_NO_REQUESTS
        print("no request was made: nothing to judge", flush=True)
    elif broken or STATE.aborted:
        environment.process_exit_code = EXIT_BREACH
        print(f"FAIL: {len(broken)} threshold(s) breached", flush=True)
    else:
        environment.process_exit_code = 0
        print("PASS: every threshold met", flush=True)


def final_report(environment: Environment) -> None:
    settings, targets = STATE.settings, STATE.targets
    if targets is None or STATE.started is None:
        return
    first, last = _measured_span(STATE.started)
    stats = STATE.stats.span(first, last)
    seconds = max(last - first + 1, 1)
    checks = evaluate(targets.thresholds, stats, seconds)
    prefix = settings.figure_prefix
    metrics = _metrics_at_end(environment.host)
    hit_rate, level_rates = _cache_figures(metrics, prefix)
    cache_result = cache_hit_check(targets, hit_rate)
    if cache_result is not None:
        checks.append(cache_hit_as_check(cache_result))

    figures = load_figures(stats, seconds, prefix=prefix, journeys=JOURNEYS)
    uncertainty.put(figures, f"{prefix}.url_cache_hit_rate", hit_rate)
    figures.update(level_rates)
    figures[f"{prefix}.measured_s"] = float(seconds)
    saturated = saturation(figures, prefix, STATE.cpu, targets.saturation_cpu)
    ramp = STATE.ramp
    if ramp is not None and ramp.best_users is not None:
        figures[f"{prefix}.ramp.max_users_passing"] = float(ramp.best_users)

    title = (
        f"thresholds ({settings.url_mode} URLs, {seconds} s after a {warmup_s():g} s warm-up, "
        f"targets {targets.path})"
    )
    print(format_table(checks, title), flush=True)
    for message in [saturated, *STATE.skipped, ramp and _ramp_summary(ramp)]:
        if message:
            print(message, flush=True)
    _verdict(environment, checks, stats["overall"].count)
    service_p95 = _service_p95(figures, prefix, metrics)

    runner = environment.runner
    meta = {
        "url_mode": settings.url_mode,
        "host": environment.host,
        "seconds": seconds,
        "users": runner.user_count if runner else None,
        "workers": runner.worker_count if isinstance(runner, MasterRunner) else 0,
        "targets_file": str(targets.path),
        "warmup_s": warmup_s(),
        "saturated": saturated,
        "skipped": STATE.skipped,
        "aborted": STATE.aborted,
        "checks": [c.as_dict() for c in checks],
        "ramp": None if ramp is None else {"best_users": ramp.best_users, "steps": ramp.steps},
        "service_p95": service_p95,
    }
    write_figures(settings.out_dir / "figures" / "load.json", figures, prefix, meta)
    series_name = "load_series.json" if prefix == "load" else f"{prefix}_series.json"
    write_json(
        settings.out_dir / series_name,
        {
            "meta": meta,
            "series": STATE.stats.series(),
            "users": [{"t": t, "users": n} for t, n in sorted(STATE.users.items())],
            "histograms": {g: s.histogram.buckets_ms() for g, s in stats.items()},
            "whole_run": whole_run(STATE.stats),
        },
    )


def saturation(
    figures: dict[str, float], prefix: str, cpu: list[float], limit: float
) -> str | None:
    """Record the generator's CPU; a warning when it was busy enough to queue requests itself."""
    if not cpu:
        return None
    ordered = sorted(cpu)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    figures[f"{prefix}.generator_cpu_p95"] = p95
    figures[f"{prefix}.generator_cpu_max"] = ordered[-1]
    if p95 <= limit:
        return None
    return (
        f"load generator saturated (p95 CPU {p95:.0%} of a core, limit {limit:.0%}): latencies "
        "include client queuing; load verdicts are inconclusive"
    )


def whole_run(stats: WindowedStats) -> dict[str, Any]:
    """Every group's stats over the whole run, as wire data (exact, mergeable)."""
    return {group: s.to_wire() for group, s in stats.span().items()}


def write_worker_part(runner: WorkerRunner) -> None:
    prefix = STATE.settings.figure_prefix
    path = STATE.settings.out_dir / "workers" / f"{prefix}_{os.getpid()}.json"
    write_json(path, {"client_id": runner.client_id, "groups": whole_run(STATE.shipped)})


def _ramp_summary(ramp: RampResult) -> str:
    lines = ["ramp: users  verdict"]
    lines += [f"      {s['users']:>5}  {s['verdict']}" for s in ramp.steps]
    best = "none" if ramp.best_users is None else str(ramp.best_users)
    lines.append(f"highest user count meeting every threshold: {best}")
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def write_figures(path: Path, figures: dict[str, float], prefix: str, meta: dict[str, Any]) -> None:
    """Merge into ``load.json``: this mode's keys replace the previous ones of the same prefix."""
    existing: dict[str, Any] = {"figures": {}, "meta": {}}
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
    kept = {k: v for k, v in existing.get("figures", {}).items() if not k.startswith(f"{prefix}.")}
    merged_meta = dict(existing.get("meta", {}))
    merged_meta[prefix] = meta
    write_json(path, {"figures": {**kept, **figures}, "meta": merged_meta})


# --- the web UI's Thresholds tab ------------------------------------------------------------------


def unit_of(metric: str) -> str:
    return {"min_rps": " req/s"}.get(metric, " ms" if metric.endswith("_ms") else "")


def _extend_web_ui(environment: Environment) -> None:
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "Thresholds", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "verdict", "title": "Verdict"},
                {"key": "name", "title": "Threshold"},
                {"key": "measured", "title": "Measured"},
                {"key": "span", "title": "Over"},
            ],
        }
    ]

    @web_ui.app.after_request
    def add_thresholds(response: Any) -> Any:
        if not flask_request.path.endswith("/stats/requests") or response.json is None:
            return response
        rows = [
            {
                "name": c.label + unit_of(c.metric),
                "safe_name": c.label,
                "measured": "-" if c.measured is None else f"{c.measured:.4g}{unit_of(c.metric)}",
                "verdict": c.outcome.value,
                "span": STATE.live_title,
            }
            for c in sorted(STATE.live, key=lambda c: c.outcome is not Outcome.BREACH)
        ]
        body = {**response.json, "extended_stats": [{"key": TAB_KEY, "data": rows}]}
        response.set_data(json.dumps(body))
        return response
