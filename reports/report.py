"""The run's verdict, ``summary.json`` and the one self-contained HTML report.

Input is a :class:`RunData` (figures, target results, steps, environment, the components' meta,
query plans, history); nothing here measures or touches the network, so tests build reports from
synthetic figures.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reports import browser, svg, uncertainty
from reports.curve import STATS as CURVE_STATS
from reports.curve import Curve
from reports.formatting import (
    fmt_bound,
    fmt_count,
    fmt_factor,
    fmt_interval,
    fmt_terse,
    fmt_value,
    format_number,
)
from reports.history import RunRecord
from reports.service_metrics import AGREEMENT, GROUP_ROUTES
from reports.targets import (
    FAILING,
    Target,
    TargetResult,
    Targets,
    Threshold,
    Verdict,
    evaluate_one,
    load_targets,
)

TEMPLATES: Final = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

LOAD_GROUPS: Final = (
    "workspace_page",
    "thumbnail",
    "asset_cached",
    "search",
    "asset_high_res",
    "batch",
    "download",
    "suggestions",
    "open_workspace",
    "overall",
)
PERCENTILE_KEYS: Final = ("count", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")
#: How the two sides of each kind of claim are called, by the metric's prefix.
COMPARISON_LABELS: Final[Mapping[str, tuple[str, str, str]]] = {
    "saving.url_generation": ("URL generation", "legacy (scattered)", "unified service"),
    "saving.queries": ("Workspace queries", "migration 0001 (keys only)", "with the indexes"),
    "speedup.search": ("Search", "in-memory filter (plan)", "SQL endpoint"),
    "speedup.dedup": ("Near-duplicates", "all pairs (plan)", "MinHash LSH"),
    "speedup.batch": ("Batch dismiss", "one call per asset", "set-based"),
}


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Step:
    name: str
    title: str
    status: StepStatus = StepStatus.SKIPPED
    seconds: float = 0.0
    error: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "detail": self.detail,
        }


@dataclass
class RunData:
    scale: str
    targets: Targets
    figures: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    #: Each component's ``meta`` (``bench``, ``load``, ``load_legacy``, ...).
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: Any = None
    #: Earlier comparable runs (same machine fingerprint and scale), oldest first.
    history: list[RunRecord] = field(default_factory=list)
    #: The latest scale curve (``make bench-scale``), measured apart from this run: drawn in its
    #: own section, judged there, and never mixed into this run's figures or history.
    curve: Curve | None = None
    strict: bool = False
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def results(self) -> list[TargetResult]:
        return self.targets.evaluate(self.figures, self.scale)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    goals_met: bool
    failures: list[str]
    stopped_at: str | None

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict is Verdict.PASS else 1


def outcome(run: RunData) -> Outcome:
    """Pass only when every plan figure holds and every step ran; with ``strict`` our goals
    must hold too. ``failures`` names each reason."""
    failures = []
    results = run.results
    for r in results:
        if r.verdict in FAILING:
            failures.append(
                f"plan target {r.target.id}: {r.verdict.value}"
                + (
                    f" ({fmt_value(r.measured, r.target.unit)}, 95% "
                    f"{fmt_interval(r.estimate.low, r.estimate.high, r.target.unit)}, "
                    f"plan {fmt_bound(r.target.op, r.target.plan, r.target.unit)})"
                    if r.estimate is not None
                    else ""
                )
                + (f": {r.reason}" if r.reason else "")
            )
    usable = (Verdict.PASS, Verdict.NO_FIGURE, Verdict.NOT_APPLICABLE)
    goals_met = all(r.goal_verdict in usable for r in results)
    if run.strict:
        for r in results:
            if r.goal_verdict in FAILING:
                failures.append(f"goal {r.target.id} (STRICT=1): {r.goal_verdict.value}")
    failed_steps = [s for s in run.steps if s.status is StepStatus.FAILED]
    failures += [f"step {s.name} failed: {s.error}" for s in failed_steps]
    stopped_at = failed_steps[0].name if failed_steps else None
    verdict = Verdict.FAIL if failures else Verdict.PASS
    return Outcome(verdict, goals_met, failures, stopped_at)


# --- summary.json ---------------------------------------------------------------------------


def summarize(run: RunData) -> dict[str, Any]:
    result = outcome(run)
    return {
        "verdict": result.verdict.value,
        "goals_met": result.goals_met,
        "strict": run.strict,
        "failures": result.failures,
        "stopped_at": result.stopped_at,
        "scale": run.scale,
        "started": run.started,
        "seconds": round(run.seconds, 1),
        "targets_file": str(run.targets.path),
        "targets": [r.as_dict() for r in run.results],
        "environment": run.environment,
        "dataset": run.dataset,
        "steps": [s.as_dict() for s in run.steps],
        "figures": dict(sorted(run.figures.items())),
    }


def summary_table(run: RunData) -> str:
    """Plain-text targets table for the terminal."""
    rows = [("target", "n", "median", "95% interval", "plan", "verdict", "goal", "goal verdict")]
    for r in run.results:
        t, e = r.target, r.estimate
        unit = f" {t.unit}"
        style = fmt_value if t.unit in ("saving", "ratio", "x") else fmt_terse
        rows.append(
            (
                t.id,
                "—" if e is None else str(e.n),
                fmt_value(r.measured, t.unit),
                "—" if e is None else fmt_interval(e.low, e.high, t.unit).removesuffix(unit),
                fmt_bound(t.op, t.plan, t.unit, style).removesuffix(unit),
                r.verdict.value,
                fmt_bound(t.op, t.goal, t.unit, style).removesuffix(unit),
                _goal_word(r.goal_verdict),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    notes = [
        textwrap.fill(
            f"{r.target.id}: {r.verdict.value}: {r.reason}",
            width=118,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        for r in run.results
        if r.reason
    ]
    return "\n".join(table + notes)


def _goal_word(verdict: Verdict) -> str:
    return {
        Verdict.PASS: "met",
        Verdict.FAIL: "not yet",
        Verdict.INCONCLUSIVE: "inconclusive",
        Verdict.NOT_APPLICABLE: "n/a",
        Verdict.NOT_MEASURED: "not measured",
        Verdict.NO_FIGURE: "—",
    }[verdict]


# --- HTML: the page is templates/report.html.j2; what follows shapes the run for it ----------


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""
    title: str = ""


@dataclass(frozen=True)
class Banner:
    css: str
    head: str
    lines: list[str]


@dataclass(frozen=True)
class TargetRow:
    id: str
    name: str
    metric: str
    source: str
    plan: str
    goal: str
    measured: str
    interval: str
    n: str
    plan_margin: str
    verdict: Cell
    goal_margin: str
    goal_verdict: Cell
    reason: str


@dataclass(frozen=True)
class ClaimCharts:
    #: Titles of the claims with no figure at all in this run.
    missing: list[str]
    charts: list[str]


@dataclass(frozen=True)
class PercentileRow:
    group: str
    cells: list[Cell]
    legacy_p95: str
    thresholds: str


@dataclass(frozen=True)
class PlanView:
    name: str
    sql: str | None
    #: ``(before|after, plan as EXPLAIN's text format)``.
    sides: list[tuple[str, str]]


@dataclass(frozen=True)
class StepRow:
    title: str
    status: Cell
    seconds: str
    detail: str


@dataclass(frozen=True)
class Trends:
    runs: int
    first: str
    last: str
    commits: str
    charts: list[str]


#: The cell's class by verdict; the plan's and our goal's verdicts differ only in pass/fail.
VERDICT_CSS: Final[Mapping[Verdict, str]] = {
    Verdict.NOT_MEASURED: "missing",
    Verdict.INCONCLUSIVE: "inconclusive",
    Verdict.NOT_APPLICABLE: "na",
}


def _verdict_cell(verdict: Verdict, reason: str = "") -> Cell:
    css = {Verdict.PASS: "pass", Verdict.FAIL: "fail", **VERDICT_CSS}
    return Cell(verdict.value, css.get(verdict, ""), reason)


def _goal_cell(verdict: Verdict, reason: str = "") -> Cell:
    css = {Verdict.PASS: "goal-met", Verdict.FAIL: "goal-not", **VERDICT_CSS}
    return Cell(_goal_word(verdict), css.get(verdict, ""), reason)


def _banner(run: RunData, result: Outcome) -> Banner:
    results = run.results
    held = sum(r.verdict is Verdict.PASS for r in results)
    planned = sum(r.verdict is not Verdict.NO_FIGURE for r in results)
    goals = sum(r.goal_verdict is Verdict.PASS for r in results)
    with_goal = sum(r.goal_verdict is not Verdict.NO_FIGURE for r in results)
    head = (
        "PASS: every plan target holds"
        if result.verdict is Verdict.PASS
        else "FAIL: " + ("the run stopped early" if result.stopped_at else "a target does not hold")
    )
    lines = [
        f"{held} of {planned} plan targets hold; our goals met: {goals} of {with_goal}"
        + (" (STRICT=1: goals decide the verdict)" if run.strict else ""),
    ]
    if result.stopped_at:
        lines.append(f"stopped at step “{result.stopped_at}”; what was measured before is below")
    lines += result.failures[:12]
    return Banner("pass" if result.verdict is Verdict.PASS else "fail", head, lines)


def _target_rows(results: Sequence[TargetResult]) -> list[TargetRow]:
    return [
        TargetRow(
            id=t.id,
            name=t.name,
            metric=t.metric,
            source=t.source,
            plan=fmt_bound(t.op, t.plan, t.unit),
            goal=fmt_bound(t.op, t.goal, t.unit),
            measured=fmt_value(r.measured, t.unit),
            interval="—" if e is None else fmt_interval(e.low, e.high, t.unit),
            n="—" if e is None else f"{e.n:,}",
            plan_margin=fmt_factor(t.op, r.measured, t.plan),
            verdict=_verdict_cell(r.verdict, r.reason),
            goal_margin=fmt_factor(t.op, r.measured, t.goal),
            goal_verdict=_goal_cell(r.goal_verdict, r.reason),
            reason=r.reason,
        )
        for r in results
        for t, e in [(r.target, r.estimate)]
    ]


Interval = tuple[float, float] | None


def _ms_interval(raw: Any) -> Interval:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        return None
    low, high = (_as_float(x) for x in raw)
    return None if low is None or high is None else (low * 1000, high * 1000)


def _comparison(run: RunData, metric: str) -> tuple[float, float, Interval, Interval] | None:
    """Median times (ms) of a claim's two sides and their 95% intervals, from the benchmark
    figures' ``pairs``."""
    claim = metric.split(".", 1)[1]
    for pair in run.meta.get("bench", {}).get("pairs") or []:
        if isinstance(pair, Mapping) and pair.get("claim") == claim:
            before, after = (
                _as_float(pair.get("before_median_s")),
                _as_float(pair.get("after_median_s")),
            )
            if before is not None and after is not None:
                return (
                    before * 1000,
                    after * 1000,
                    _ms_interval(pair.get("before_interval_s")),
                    _ms_interval(pair.get("after_interval_s")),
                )
    return None


def _figure_interval(figures: Mapping[str, float], key: str) -> Interval:
    estimate = uncertainty.get(figures, key)
    return None if estimate is None else (estimate.low, estimate.high)


def _claim_charts(run: RunData) -> ClaimCharts:
    charts = []
    by_prefix: dict[str, list[TargetResult]] = {}
    for r in run.results:
        prefix = r.target.metric.rsplit(".", 1)[0]
        if prefix in COMPARISON_LABELS:
            by_prefix.setdefault(prefix, []).append(r)
    missing = []
    for prefix, results in by_prefix.items():
        title, before_label, after_label = COMPARISON_LABELS[prefix]
        if all(r.measured is None for r in results):
            missing.append(title)
            continue
        absolute = [_comparison(run, r.target.metric) for r in results]
        categories = [r.target.metric.rsplit(".", 1)[1].replace("_", " ") for r in results]
        before: list[float | None]
        after: list[float | None]
        spreads: tuple[list[Interval], list[Interval]] = ([], [])
        if any(a is not None for a in absolute):
            before = [None if a is None else a[0] for a in absolute]
            after = [None if a is None else a[1] for a in absolute]
            spreads = (
                [None if a is None else a[2] for a in absolute],
                [None if a is None else a[3] for a in absolute],
            )
            unit = "median time per operation, ms (shorter is better; bars: 95% interval)"
        else:
            before = [100.0 if r.measured is not None else None for r in results]
            after = [_relative_after(r) for r in results]
            unit = "time relative to before, % (shorter is better)"
        charts.append(
            svg.bar_chart(
                f"{title}: before vs after",
                categories,
                [
                    svg.Series(before_label, before, intervals=spreads[0]),
                    svg.Series(after_label, after, intervals=spreads[1]),
                ],
                unit,
            )
        )
    load_chart = _mode_chart(run)
    if load_chart:
        charts.append(load_chart)
    return ClaimCharts(missing, charts)


def _relative_after(result: TargetResult) -> float | None:
    value = result.measured
    if value is None:
        return None
    if result.target.unit == "saving":
        return (1 - value) * 100
    return 100 / value if value > 0 else None


def _groups(figures: Mapping[str, float], prefix: str) -> list[str]:
    found = {k[len(prefix) + 1 :].rsplit(".", 1)[0] for k in figures if k.startswith(prefix + ".")}
    found = {g for g in found if any(f"{prefix}.{g}.{k}" in figures for k in PERCENTILE_KEYS)}
    known = [g for g in LOAD_GROUPS if g in found]
    return known + sorted(found - set(known))


def _mode_chart(run: RunData) -> str:
    groups = [g for g in _groups(run.figures, "load") if f"load_legacy.{g}.p95_ms" in run.figures]
    if not groups:
        return ""
    return svg.bar_chart(
        "Load test p95 by endpoint: legacy URLs vs unified service",
        [g.replace("_", " ") for g in groups],
        [
            svg.Series(
                f"URL_MODE={mode}",
                [run.figures.get(f"{prefix}.{g}.p95_ms") for g in groups],
                intervals=[_figure_interval(run.figures, f"{prefix}.{g}.p95_ms") for g in groups],
            )
            for mode, prefix in (("legacy", "load_legacy"), ("unified", "load"))
        ],
        "p95 latency, ms (shorter is better; bars: 95% interval)",
    )


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _timeseries_rows(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The load runner's per-second rows (``t``, ``group``, ``count``, ``failures``, ``p50_ms``,
    ``p95_ms``, ``max_ms``) of all requests, in time order."""
    rows = meta.get("timeseries")
    if not isinstance(rows, list):
        return []
    overall = [r for r in rows if isinstance(r, Mapping) and r.get("group") == "overall"]
    return sorted(overall, key=lambda r: _as_float(r.get("t")) or 0.0)


LOAD_MODES: Final = (("unified", "load"), ("legacy", "load_legacy"))


def _load_over_time(run: RunData) -> list[str]:
    """Both URL modes on one time axis each chart: latency (p50, p95), throughput, users."""
    rows = {mode: _timeseries_rows(run.meta.get(key, {})) for mode, key in LOAD_MODES}
    rows = {mode: r for mode, r in rows.items() if r}
    charts = []
    if rows:
        x_label = (
            f"time since the first request, s (the first {run.targets.warmup_s:g} s are a "
            "warm-up, left out of every figure)"
        )

        def xs(found: list[Mapping[str, Any]]) -> list[float]:
            first = _as_float(found[0].get("t")) or 0.0
            return [(_as_float(r.get("t")) or 0.0) - first for r in found]

        latency = [
            svg.Series(f"{mode} {label}", [_as_float(r.get(col)) for r in found], xs(found))
            for mode, found in rows.items()
            for label, col in (("p50", "p50_ms"), ("p95", "p95_ms"))
        ]
        charts.append(
            svg.line_chart(
                "Latency over time, all requests, per second: legacy and unified URLs",
                latency,
                x_label=x_label,
                y_label="latency, ms",
            )
        )
        # The last second is cut short by the end of the run: its count is not a rate.
        throughput = [
            svg.Series(mode, [_as_float(r.get("count")) for r in found[:-1]], xs(found)[:-1])
            for mode, found in rows.items()
        ]
        charts.append(
            svg.line_chart(
                "Throughput over time (whole seconds only): legacy and unified URLs",
                throughput,
                x_label=x_label,
                y_label="requests per second",
            )
        )
        shape = _users_series(run)
        if shape:
            charts.append(
                svg.line_chart(
                    "Load shape: users running over time",
                    shape,
                    x_label="time since the start of the run, s",
                    y_label="users",
                )
            )
    for mode, key in LOAD_MODES:
        distribution = _distribution(run, key, mode)
        if distribution:
            charts.append(distribution)
    return charts


def _users_series(run: RunData) -> list[svg.Series]:
    shape = []
    for mode, key in LOAD_MODES:
        raw = run.meta.get(key, {}).get("users")
        points = [p for p in raw or [] if isinstance(p, Mapping)]
        if not points:
            continue
        first = _as_float(points[0].get("t")) or 0.0
        shape.append(
            svg.Series(
                mode,
                [_as_float(p.get("users")) for p in points],
                [(_as_float(p.get("t")) or 0.0) - first for p in points],
            )
        )
    return shape


def _distribution(run: RunData, key: str, mode: str) -> str:
    """Histogram of all requests from the runner's buckets (``[low_ms, high_ms, count]``)."""
    histograms = run.meta.get(key, {}).get("histograms")
    buckets = histograms.get("overall") if isinstance(histograms, Mapping) else None
    if not isinstance(buckets, list):
        return ""
    points = []
    for bucket in buckets:
        if isinstance(bucket, list | tuple) and len(bucket) == 3:
            low, high, count = (_as_float(v) for v in bucket)
            if low is not None and high is not None and count:
                points.append(((low + high) / 2, count))
    edges, counts = svg.bins_from_weighted(points, 40)
    marks = [
        svg.RefLine(label, value, color, unit="ms")
        for label, col, color in (("p50", "p50_ms", "#2e7d32"), ("p95", "p95_ms", "#c62828"))
        if (value := run.figures.get(f"{key}.overall.{col}")) is not None
    ]
    return svg.histogram(
        f"Latency distribution, all requests (URL_MODE={mode})",
        edges,
        counts,
        x_label="latency, ms (tail above the 99.5th percentile in the last bar)",
        marks=marks,
    )


def _percentile_rows(run: RunData) -> list[PercentileRow]:
    groups = _groups(run.figures, "load")
    legacy = set(_groups(run.figures, "load_legacy"))
    rows = []
    for group in groups + sorted(legacy - set(groups)):
        threshold = run.targets.threshold(group)
        cells = []
        for key in PERCENTILE_KEYS:
            value = run.figures.get(f"load.{group}.{key}")
            limit = getattr(threshold, key, None) if threshold else None
            css = "num"
            if value is not None and limit is not None:
                css += " fail" if value > limit else " pass"
            unit = {"error_rate": "ratio", "count": "", "rps": "req/s"}.get(key, "ms")
            text = "—" if value is None else fmt_value(value, unit) if unit else f"{value:,.0f}"
            title = f"threshold {limit}" if limit is not None else ""
            cells.append(Cell(text, css, title))
        legacy_p95 = fmt_value(run.figures.get(f"load_legacy.{group}.p95_ms"), "ms")
        rows.append(PercentileRow(group, cells, legacy_p95, _threshold_text(threshold)))
    return rows


@dataclass(frozen=True)
class AgreementRow:
    mode: str
    group: str
    route: str
    client: str
    n: str
    service: str
    verdict: Cell


def _agreement_verdict(client: float, high: float, row: Mapping[str, Any]) -> Cell:
    if not row.get("disagree"):
        return Cell("agree", "pass")
    how = (
        f"Locust {client / high:.1f}x the bucket's upper bound"
        if client > high
        else "Locust below the service's own time"
    )
    if row.get("sure", True):
        return Cell(f"DISAGREE: {how}", "fail")
    interval = row.get("client_p95_interval_ms") or []
    spread = ", ".join(format_number(float(b)) for b in interval)
    return Cell(
        f"apart, not sure: {how}, but n = {row.get('n')} and Locust's 95% interval "
        f"[{spread}] ms reaches the band",
        "inconclusive",
    )


@dataclass(frozen=True)
class Agreement:
    rows: list[AgreementRow]
    #: Each URL mode's window of the service's histogram.
    windows: list[str]


def _agreement(run: RunData) -> Agreement:
    """Locust's p95 beside the service's ``/metrics`` histogram, per route and URL mode, and
    each mode's window."""
    rows, windows = [], []
    for mode, key in LOAD_MODES:
        found = run.meta.get(key, {}).get("service_p95")
        if not isinstance(found, Mapping):
            continue
        groups = found.get("groups")
        if not isinstance(groups, Mapping) or not groups:
            continue
        windows.append(f"{mode}: {found.get('window') or 'window not recorded'}")
        for group, row in groups.items():
            client = _as_float(row.get("client_p95_ms")) if isinstance(row, Mapping) else None
            bucket = row.get("service_p95_bucket_ms") if isinstance(row, Mapping) else None
            if client is None or not isinstance(bucket, list | tuple) or len(bucket) != 2:
                continue
            low, high = (float(b) for b in bucket)
            method, route = GROUP_ROUTES.get(group, ("", ""))
            rows.append(
                AgreementRow(
                    mode,
                    group,
                    f"{method} {route}".strip(),
                    fmt_value(client, "ms"),
                    f"{row['n']:,}" if isinstance(row.get("n"), int) else "—",
                    f"({format_number(low)}, {format_number(high)}] ms",
                    _agreement_verdict(client, high, row),
                )
            )
    return Agreement(rows, windows)


def _threshold_text(threshold: Threshold | None) -> str:
    if threshold is None:
        return "—"
    parts = []
    for key in ("p50_ms", "p95_ms", "p99_ms", "error_rate", "min_rps"):
        value = getattr(threshold, key)
        if value is not None:
            op = ">" if key == "min_rps" else "<"
            parts.append(f"{key.removeprefix('min_')}{op}{format_number(value)}")
    return ", ".join(parts) or "—"


def _plan_node(node: Mapping[str, Any], depth: int) -> list[str]:
    """One node of ``EXPLAIN (ANALYZE, FORMAT JSON)`` as the text format would print it."""
    words = [str(node.get("Node Type", "?"))]
    if "Index Name" in node:
        words.append(f"using {node['Index Name']}")
    if "Relation Name" in node:
        words.append(f"on {node['Relation Name']}")
    timing = ""
    if "Actual Total Time" in node:
        timing = (
            f"  (actual time={node.get('Actual Startup Time')}..{node['Actual Total Time']} ms "
            f"rows={node.get('Actual Rows')} loops={node.get('Actual Loops')})"
        )
    prefix = "  " * depth + ("->  " if depth else "")
    lines = [prefix + " ".join(words) + timing]
    for key in ("Index Cond", "Filter", "Sort Key", "Rows Removed by Filter"):
        if key in node:
            lines.append("  " * depth + f"      {key}: {node[key]}")
    for child in node.get("Plans") or []:
        if isinstance(child, Mapping):
            lines += _plan_node(child, depth + 1)
    return lines


def _plan_text(plan: Any) -> str:
    if isinstance(plan, str):
        return plan
    if isinstance(plan, list) and all(isinstance(line, str) for line in plan):
        return "\n".join(plan)
    root = plan[0] if isinstance(plan, list) and plan else plan
    if isinstance(root, Mapping) and isinstance(root.get("Plan"), Mapping):
        lines = _plan_node(root["Plan"], 0)
        for key in ("Planning Time", "Execution Time"):
            if key in root:
                lines.append(f"{key}: {root[key]} ms")
        return "\n".join(lines)
    return json.dumps(plan, indent=2, default=str)


def _plan_entries(plans: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if isinstance(plans, Mapping) and "queries" in plans:
        plans = plans["queries"]
    if isinstance(plans, Mapping):
        return [(str(k), v) for k, v in plans.items() if isinstance(v, Mapping)]
    if isinstance(plans, list):
        return [
            (str(p.get("name", p.get("id", i))), p)
            for i, p in enumerate(plans)
            if isinstance(p, Mapping)
        ]
    return []


def _plans(run: RunData) -> list[PlanView]:
    return [
        PlanView(
            name,
            str(entry["sql"]) if "sql" in entry else None,
            [(side, _plan_text(entry[side])) for side in ("before", "after") if side in entry],
        )
        for name, entry in _plan_entries(run.plans)
    ]


def _shown(items: Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(key, str(value)) for key, value in items if value not in (None, "")]


def _environment(run: RunData) -> list[tuple[str, str]]:
    env = run.environment
    machine = env.get("machine", {})
    database = env.get("database", {})
    git = env.get("git", {})
    return _shown(
        [
            ("CPU", machine.get("cpu_model")),
            ("cores", machine.get("cores")),
            ("memory", f"{machine.get('memory_gib')} GiB" if machine.get("memory_gib") else None),
            ("OS", machine.get("os")),
            ("Python", machine.get("python")),
            ("PostgreSQL", database.get("server_version")),
            ("database provider", database.get("provider_label") or database.get("provider")),
            ("provider detail", database.get("detail")),
            (
                "pg_trgm",
                {True: "available", False: "NOT available"}.get(database.get("has_pg_trgm")),
            ),
            (
                "commit",
                f"{git.get('short', '?')}{' (uncommitted changes)' if git.get('dirty') else ''}"
                f" {git.get('subject', '')}".strip()
                if git
                else None,
            ),
            ("machine fingerprint", env.get("fingerprint")),
            ("targets file", str(run.targets.path)),
            ("started", run.started),
            ("whole run", f"{run.seconds:.0f} s" if run.seconds else None),
        ]
    )


def _dataset(run: RunData) -> list[tuple[str, str]]:
    data = run.dataset
    items: list[tuple[str, Any]] = [("scale", run.scale)]
    if data:
        items += [
            ("seed", data.get("seed")),
            ("assets of the heavy user", fmt_count(data.get("heavy_assets"))),
            ("assets, all users", fmt_count(data.get("assets"))),
        ]
        items += [(f"rows: {k}", fmt_count(v)) for k, v in dict(data.get("rows", {})).items()]
        rate = data.get("rows_per_second")
        if isinstance(rate, int | float):
            items.append(("load rate (COPY at 0001, generation included)", f"{rate:,.0f} rows/s"))
    return _shown(items)


def _steps(run: RunData) -> list[StepRow]:
    css = {StepStatus.OK: "pass", StepStatus.FAILED: "fail"}
    return [
        StepRow(
            s.title,
            Cell(s.status.value, css.get(s.status, "missing")),
            f"{s.seconds:.1f} s",
            s.error or s.detail,
        )
        for s in run.steps
    ]


def _trends(run: RunData) -> Trends | None:
    runs = [*run.history, _current_record(run)]
    if len(runs) < 2:
        return None
    xs = [float(i) for i in range(1, len(runs) + 1)]
    by_unit: dict[str, list[Target]] = {}
    for t in run.targets.targets:
        if sum(r.figures.get(t.metric) is not None for r in runs) >= 2:
            by_unit.setdefault(t.unit, []).append(t)
    charts = []
    for unit, targets in by_unit.items():
        scale = 100.0 if unit in ("saving", "ratio") else 1.0
        series = [
            svg.Series(
                t.id,
                [None if v is None else v * scale for v in (r.figures.get(t.metric) for r in runs)],
                xs,
            )
            for t in targets
        ]
        refs = (
            [svg.RefLine(f"plan {targets[0].op}", targets[0].plan * scale)]
            if len({t.plan for t in targets}) == 1 and targets[0].plan is not None
            else []
        )
        label = {"saving": "saving, %", "ratio": "ratio, %", "x": "speed-up, x"}.get(unit, unit)
        charts.append(
            svg.line_chart(
                f"Trend: {label}",
                series,
                x_label=f"commit and date of each complete run ({len(runs)}; same machine, "
                "scale and figure definitions)",
                y_label=label,
                refs=refs,
                x_names={
                    x: f"{r.commit[:7] or '?'} {r.time[5:10]}"
                    for x, r in zip(xs, runs, strict=True)
                },
            )
        )
    commits = ", ".join(dict.fromkeys(r.commit[:10] for r in runs))
    return Trends(len(runs), runs[0].time, runs[-1].time, commits, charts)


def _current_record(run: RunData) -> RunRecord:
    return RunRecord(
        time=run.started,
        commit=str(run.environment.get("git", {}).get("commit", "")),
        fingerprint=str(run.environment.get("fingerprint", "")),
        scale=run.scale,
        verdict=outcome(run).verdict.value,
        figures=dict(run.figures),
    )


@dataclass(frozen=True)
class BrowserView:
    reason: str = ""
    #: (what, before median [min, max], after median [min, max], saving)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    filmstrips: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _spread(cell: Any, unit: str) -> str:
    if not isinstance(cell, Mapping) or cell.get("median") is None:
        return "—"
    style = "ratio" if unit == "share" else unit
    return (
        f"{fmt_value(cell['median'], style)} "
        f"[{fmt_value(cell.get('min'), style)}, {fmt_value(cell.get('max'), style)}]"
    )


def _frame_chart(histograms: Any) -> str:
    if not isinstance(histograms, Mapping):
        return ""
    uppers = histograms.get("bucket_upper_ms") or []
    counts = histograms.get("counts") or {}
    labels = [f"≤ {u:g} ms" if u is not None else "longer" for u in uppers]
    series = []
    for variant in browser.VARIANTS:
        by_target = counts.get(variant) or {}
        if not by_target:
            continue
        last = max(by_target, key=lambda k: int(k) if str(k).isdigit() else 0)
        series.append(svg.Series(f"{variant} (scroll to {last})", list(by_target[last])))
    if not series:
        return ""
    return svg.bar_chart(
        "Frame times while scrolling (requestAnimationFrame deltas)", labels, series, "frames"
    )


def _browser(run: RunData, run_dir: Path | None) -> BrowserView | None:
    meta = run.meta.get("browser")
    if not meta:
        return None
    figures = {k: v for k, v in run.figures.items() if k.startswith("browser.")}
    data = browser.section({"meta": meta, "figures": figures})
    if not data.get("measured"):
        return BrowserView(reason=str(data.get("reason", "")))
    rows = [
        (
            str(row["label"]),
            _spread(row.get("before"), str(row["unit"])),
            _spread(row.get("after"), str(row["unit"])),
            fmt_value(row.get("saving"), "saving"),
        )
        for row in data["rows"]
    ]
    chart = _frame_chart(data.get("frame_histograms"))
    rounds = len(meta.get("rounds", {}).get("after", []))
    notes = [
        f"{rounds} rounds per page at scale {data.get('scale')}, {data.get('profile')} profile, "
        f"in {data.get('seconds', 0):.0f} s; each round a new browser and a fresh service."
    ]
    if data.get("not_measured"):
        notes.append(
            f"Not measured by the {data.get('profile')} profile (BROWSER_PROFILE=full measures "
            f"them): {'; '.join(data['not_measured'])}."
        )
    if data.get("mobile_ratio"):
        notes.append(
            "Phone against desktop, first screen (the plan's page): "
            f"{_spread(data['mobile_ratio'], 'x')}."
        )
    return BrowserView(
        rows=rows,
        charts=[chart] if chart else [],
        filmstrips=browser.filmstrip_images(data, run_dir) if run_dir else {},
        notes=notes,
    )


def _bench_target_rows(run: RunData) -> list[TargetRow]:
    """The run's targets; a scale-curve target points to the section that judges it."""
    rows = _target_rows(run.results)
    if run.curve is None:
        return rows
    elsewhere = "judged in the scale curve section below, from make bench-scale's latest curve"
    return [
        replace(
            row,
            reason=elsewhere,
            verdict=replace(row.verdict, title=elsewhere),
            goal_verdict=replace(row.goal_verdict, title=elsewhere),
        )
        if row.metric.startswith("curve.")
        else row
        for row in rows
    ]


#: The hot path's columns: each statistic of ``benchmarks.hot_path`` and its unit.
HOT_STATS: Final = (
    ("requests_per_s", "req/s"),
    ("floor_per_s", "pages/s"),
    ("ratio_to_floor", ""),
    ("cpu_ms_per_request", "ms"),
    ("p50_ms", "ms"),
    ("p99_ms", "ms"),
)


@dataclass(frozen=True)
class HotRow:
    route: str
    path: str
    #: Median [interval] of each of :data:`HOT_STATS`.
    cells: list[Cell]
    rounds: str


@dataclass(frozen=True)
class HotPathView:
    #: Why nothing was measured (the step left out or failed); empty when measured.
    reason: str = ""
    rows: list[HotRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _hot_routes(run: RunData, known: Sequence[str]) -> list[str]:
    found = {
        key.split(".")[1]
        for key in run.figures
        if key.startswith("hot.") and key.endswith(".requests_per_s") and key.count(".") == 2
    }
    return [r for r in known if r in found] + sorted(found - set(known))


def _hot_path(run: RunData) -> HotPathView | None:
    """Per route, requests/s of one service process beside its floor, from the ``hot.*``
    figures; the step's reason when it measured nothing, no section when it was not in the run."""
    meta = run.meta.get("hot") or {}
    found = meta.get("routes")
    paths: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    routes = _hot_routes(run, list(paths))
    if not routes:
        step = next((s for s in run.steps if s.name == "hot_path"), None)
        if step is None:
            return None
        return HotPathView(reason=step.error or step.detail or "the step did not run")
    rows = []
    for route in routes:
        estimates = [uncertainty.get(run.figures, f"hot.{route}.{stat}") for stat, _ in HOT_STATS]
        cells = [Cell(_estimate_text(e), "num") for e in estimates]
        rounds = estimates[0].n if estimates[0] is not None else 0
        rows.append(HotRow(route, str(paths.get(route, "")), cells, f"{rounds:,}"))
    seconds = _as_float(meta.get("seconds"))
    how = (
        f"Each round runs wrk for {seconds:g} s, then the floor as long, alternating so that "
        "drift on the machine hits both; "
        if seconds is not None
        else ""
    )
    notes = [
        "The floor is the same page built as JSON by PostgreSQL (json_agg over the statement "
        f"the route sends), fetched over asyncpg on as many connections "
        f"({meta.get('connections', 8)}), with no HTTP and no Python per row: what the database "
        "alone allows. The ratio is each round's requests/s over its floor.",
        f"{how}one service process (WORKERS=1) after a warm-up, its caches warm. Each cell: the "
        "median of the rounds [95% interval]; below 5 rounds the interval is the rounds' range. "
        "CPU: the service process's user and system time per answered request.",
    ]
    return HotPathView(rows=rows, notes=notes)


@dataclass(frozen=True)
class CurveRow:
    route: str
    path: str
    paged: bool
    #: p50 and p95 of each scale, smallest scale first.
    cells: list[Cell]
    growth: Cell


@dataclass(frozen=True)
class CurveSection:
    notes: list[str]
    charts: list[str]
    #: Column headings: each scale as assets (scale name).
    scales: list[str]
    rows: list[CurveRow]
    targets: list[TargetRow]
    plans: list[tuple[str, list[tuple[str, str]]]]


def _estimate_text(e: uncertainty.Estimate | None) -> str:
    if e is None:
        return "—"
    return f"{format_number(e.value)} [{format_number(e.low)}, {format_number(e.high)}]"


def _curve_cells(curve: Curve, route: str, scale: str) -> list[Cell]:
    failed = curve.failed(route, scale)
    if failed:
        return [Cell(f"failed: {failed} answers not 200", "fail")] * 2
    return [
        Cell(_estimate_text(e), "num", "" if e is None else f"n = {e.n}")
        for e in (curve.estimate(route, scale, stat) for stat in CURVE_STATS)
    ]


def _growth_cell(estimate: uncertainty.Estimate | None, flat: Target | None) -> Cell:
    """p95 growth, judged by the flatness target's bound where the route is paged."""
    if estimate is None:
        return Cell("—", "num")
    text = f"{estimate.value:.2f}x [{estimate.low:.2f}, {estimate.high:.2f}]"
    bound = None if flat is None else flat.plan if flat.plan is not None else flat.goal
    if flat is None or bound is None:
        return Cell(text, "num")
    verdict = flat.judge(estimate, bound)
    css = {Verdict.PASS: "pass", Verdict.FAIL: "fail", Verdict.INCONCLUSIVE: "inconclusive"}
    return Cell(text, f"num {css[verdict]}", f"{verdict.value} against {flat.op} {bound:g}x")


def _curve_section(
    curve: Curve | None, targets: Targets, run_commit: str = ""
) -> CurveSection | None:
    if curve is None:
        return None
    judged = [
        evaluate_one(t, curve.figures, None, targets.saturation_cpu)
        for t in targets.targets
        if t.metric.startswith("curve.")
    ]
    flat = next((r.target for r in judged if r.target.metric == "curve.flatness_p95"), None)
    scales = curve.scales
    paged = curve.paged
    rows = [
        CurveRow(
            route,
            curve.path(route),
            route in paged,
            [cell for scale, _ in scales for cell in _curve_cells(curve, route, scale)],
            _growth_cell(curve.growth(route), flat if route in paged else None),
        )
        for route in curve.routes
    ]
    return CurveSection(
        notes=curve.provenance(run_commit),
        charts=curve.charts(),
        scales=[curve.scale_label(scale) for scale, _ in scales],
        rows=rows,
        targets=_target_rows(judged),
        plans=curve.plans(),
    )


def render_curve_page(curve: Curve, targets: Targets) -> str:
    """The scale curve alone, as ``make bench-scale`` leaves it: the section of the report."""
    return TEMPLATES.get_template("curve.html.j2").render(curve=_curve_section(curve, targets))


def write_curve_page(curve: Curve, path: Path, targets: Targets | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_curve_page(curve, targets or load_targets())
    path.write_text(html, encoding="utf-8")
    return path


def render_html(run: RunData, run_dir: Path | None = None) -> str:
    result = outcome(run)
    return TEMPLATES.get_template("report.html.j2").render(
        verdict=result.verdict.value,
        scale=run.scale,
        banner=_banner(run, result),
        targets=_bench_target_rows(run),
        claims=_claim_charts(run),
        load_charts=_load_over_time(run),
        percentile_keys=PERCENTILE_KEYS,
        percentiles=_percentile_rows(run),
        agreement=_agreement(run),
        agreement_limit=f"{AGREEMENT:.0%}",
        plans=_plans(run),
        steps=_steps(run),
        environment=_environment(run),
        dataset=_dataset(run),
        trends=_trends(run),
        browser=_browser(run, run_dir),
        hot_path=_hot_path(run),
        curve=_curve_section(
            run.curve, run.targets, str(run.environment.get("git", {}).get("commit", ""))
        ),
    )


def write_outputs(run: RunData, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summarize(run), indent=2, default=str), encoding="utf-8")
    html_path = out_dir / "index.html"
    html_path.write_text(render_html(run, out_dir), encoding="utf-8")
    return summary_path, html_path
