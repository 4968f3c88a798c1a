"""k6-style load thresholds (``[load.thresholds.*]`` of the targets file) on measured stats.

Latency bounds are strict (``p95 < 500``, as k6 writes ``p(95)<500``), the error rate too
(``rate < 0.01``); ``min_rps`` is a floor (``rps >= 5``). A group with no requests is reported
as not measured, never as a pass or a breach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from reports import uncertainty
from reports.latency import OVERALL, GroupStats
from reports.targets import Target, TargetResult, Targets, Threshold, Verdict, evaluate_one
from reports.uncertainty import Estimate

PERCENTILES: Final = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0}
FIGURE_KEYS: Final = ("p50_ms", "p95_ms", "p99_ms", "error_rate", "rps", "count")
CACHE_HIT_METRIC: Final = "load.url_cache_hit_rate"


class Outcome(StrEnum):
    PASS = "pass"
    BREACH = "BREACH"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no data"


@dataclass(frozen=True)
class Check:
    group: str
    metric: str
    op: str
    bound: float
    measured: float | None
    outcome: Outcome

    @property
    def label(self) -> str:
        return f"{self.group}: {self.metric} {self.op} {self.bound:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "metric": self.metric,
            "op": self.op,
            "bound": self.bound,
            "measured": self.measured,
            "outcome": self.outcome.value,
        }


def group_figures(stats: GroupStats, seconds: float) -> dict[str, float | None]:
    h = stats.histogram
    return {
        **{key: h.percentile_ms(q) for key, q in PERCENTILES.items()},
        "error_rate": stats.error_rate,
        "rps": stats.count / seconds if seconds > 0 else None,
        "count": float(stats.count),
    }


def _check(group: str, metric: str, bound: float, measured: float | None) -> Check:
    op = ">=" if metric == "min_rps" else "<"
    if measured is None:
        return Check(group, metric, op, bound, None, Outcome.NO_DATA)
    ok = measured >= bound if op == ">=" else measured < bound
    return Check(group, metric, op, bound, measured, Outcome.PASS if ok else Outcome.BREACH)


def check_threshold(
    threshold: Threshold, stats: GroupStats | None, seconds: float, *, rates: bool = True
) -> list[Check]:
    """Every bound of ``threshold`` against ``stats``; ``rates=False`` skips ``min_rps``."""
    figures = group_figures(stats, seconds) if stats is not None and stats.count else {}
    checks = []
    for metric in ("p50_ms", "p95_ms", "p99_ms", "error_rate", "min_rps"):
        bound = getattr(threshold, metric)
        if bound is None or (metric == "min_rps" and not rates):
            continue
        measured = figures.get("rps" if metric == "min_rps" else metric)
        checks.append(_check(threshold.group, metric, bound, measured))
    return checks


def evaluate(
    thresholds: Iterable[Threshold],
    stats: Mapping[str, GroupStats],
    seconds: float,
    *,
    rates: bool = True,
) -> list[Check]:
    return [
        check
        for threshold in thresholds
        for check in check_threshold(threshold, stats.get(threshold.group), seconds, rates=rates)
    ]


def breaches(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.outcome is Outcome.BREACH]


def cache_hit_target(targets: Targets) -> Target | None:
    return next((t for t in targets.targets if t.metric == CACHE_HIT_METRIC), None)


def cache_hit_check(targets: Targets, hit_rate: Estimate | None) -> TargetResult | None:
    """The cache-hit target's verdict against its plan figure (None: no such target)."""
    target = cache_hit_target(targets)
    if target is None:
        return None
    figures: dict[str, float] = {}
    uncertainty.put(figures, target.metric, hit_rate)
    return evaluate_one(target, figures)


def cache_hit_as_check(result: TargetResult) -> Check:
    outcome = {
        Verdict.PASS: Outcome.PASS,
        Verdict.FAIL: Outcome.BREACH,
        Verdict.INCONCLUSIVE: Outcome.INCONCLUSIVE,
    }.get(result.verdict, Outcome.NO_DATA)
    bound = result.target.plan if result.target.plan is not None else float("nan")
    return Check("url_cache", "hit_rate", result.target.op, bound, result.measured, outcome)


def load_figures(
    stats: Mapping[str, GroupStats],
    seconds: float,
    *,
    prefix: str = "load",
    journeys: Iterable[str] = (),
) -> dict[str, float]:
    """The figure keys of harness.md: ``<prefix>.<group>.<key>`` and journey percentiles, each
    percentile and error rate with its 95% interval (:mod:`reports.uncertainty`)."""
    journey_set = set(journeys)
    figures: dict[str, float] = {}
    for group, group_stats in sorted(stats.items()):
        if not group_stats.count:
            continue
        base = f"{prefix}.journey.{group}" if group in journey_set else f"{prefix}.{group}"
        for key, value in group_figures(group_stats, seconds).items():
            if value is not None:
                figures[f"{base}.{key}"] = value
        for key, q in PERCENTILES.items():
            uncertainty.put(figures, f"{base}.{key}", group_stats.histogram.percentile_ci_ms(q))
        errors = uncertainty.proportion_ci(group_stats.failures, group_stats.count)
        uncertainty.put(figures, f"{base}.error_rate", errors)
    return figures


def format_table(checks: Iterable[Check], title: str = "thresholds") -> str:
    rows = [("threshold", "measured", "verdict")]
    for c in checks:
        if c.measured is None:
            measured = "-"
        elif c.metric in ("error_rate", "hit_rate"):
            measured = f"{c.measured:.4f}"
        else:
            measured = f"{c.measured:.1f}"
        rows.append((c.label, measured, c.outcome.value))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [title]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = [
    "OVERALL",
    "Check",
    "Outcome",
    "breaches",
    "cache_hit_check",
    "evaluate",
    "format_table",
    "load_figures",
]
