"""The targets file: the plan's figures and our goals, and their verdicts on a run's figures.

A run's *figures* are one flat mapping from a metric key (``load.search.p95_ms``,
``saving.queries.by_job``, ...) to a number, with its 95% interval beside it
(:mod:`reports.uncertainty`); benchmarks, the load test and the dataset each contribute theirs.

A target *passes* when the figure's whole interval lies on the good side of the bound, *fails*
when it lies wholly on the bad side, and is *inconclusive* otherwise; a figure without an
interval (a count) is its own interval. Below the scale a target needs (``min_scale``), or
without the figures it needs to mean something (``requires``), it is *not applicable*, with the
reason, and judges nothing.
"""

from __future__ import annotations

import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from fixtures.spec import Scale
from reports.uncertainty import Estimate, get

TARGETS_FILE: Final = Path(__file__).resolve().parent.parent / "benchmarks" / "targets.toml"

OPS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class TargetsError(ValueError):
    """The targets file is malformed."""


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not applicable"
    NOT_MEASURED = "not measured"
    NO_FIGURE = "no figure"


#: Verdicts that keep a run from passing.
FAILING: Final = frozenset({Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NOT_MEASURED})
SCALE_ORDER: Final = tuple(s.value for s in Scale)


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    source: str
    metric: str
    unit: str
    op: str
    plan: float | None = None
    goal: float | None = None
    #: The smallest dataset scale at which the figure means something.
    min_scale: str | None = None
    #: Figures the target needs, with their minimum (a long enough load run, say).
    requires: Mapping[str, float] = field(default_factory=dict)
    #: Why, in a few words, for the "not applicable" verdict.
    applies_when: str = ""
    #: The largest SCALE at which the figure can be measured in bounded time (a "before" that
    #: loads a user's whole list, say); above it the target is not applicable.
    max_scale: str | None = None
    #: Why above ``max_scale``, when ``applies_when`` speaks of the smaller scales only.
    max_scale_why: str = ""

    def holds(self, measured: float, bound: float) -> bool:
        return OPS[self.op](measured, bound)

    def judge(self, estimate: Estimate, bound: float) -> Verdict:
        """Pass when every value of the interval holds, fail when none does."""
        low_holds, high_holds = self.holds(estimate.low, bound), self.holds(estimate.high, bound)
        if low_holds and high_holds and self.holds(estimate.value, bound):
            return Verdict.PASS
        if not low_holds and not high_holds and not self.holds(estimate.value, bound):
            return Verdict.FAIL
        return Verdict.INCONCLUSIVE

    def not_applicable(self, figures: Mapping[str, float], scale: str | None) -> str | None:
        """Why the target means nothing for this run (None: it applies)."""
        why = f": {self.applies_when}" if self.applies_when else ""
        small = (
            self.min_scale is not None
            and scale in SCALE_ORDER
            and SCALE_ORDER.index(scale) < SCALE_ORDER.index(self.min_scale)
        )
        if small:
            return f"needs SCALE={self.min_scale} or larger (this run: {scale}){why}"
        large = (
            self.max_scale is not None
            and scale in SCALE_ORDER
            and SCALE_ORDER.index(scale) > SCALE_ORDER.index(self.max_scale)
        )
        if large:
            above = f": {self.max_scale_why}" if self.max_scale_why else why
            return f"measured up to SCALE={self.max_scale} (this run: {scale}){above}"
        for key, minimum in self.requires.items():
            value = figures.get(key)
            if value is None or value < minimum:
                seen = "absent" if value is None else f"{value:g}"
                return f"needs {key} >= {minimum:g} (this run: {seen}){why}"
        return None

    def margin(self, measured: float, bound: float) -> float | None:
        """How far on the good side of the bound, as a fraction of it (negative: missed)."""
        if bound == 0:
            return None
        gap = bound - measured if self.op in ("<", "<=") else measured - bound
        return gap / abs(bound)


@dataclass(frozen=True)
class TargetResult:
    target: Target
    measured: float | None
    verdict: Verdict
    goal_verdict: Verdict
    plan_margin: float | None
    goal_margin: float | None
    estimate: Estimate | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "id": t.id,
            "name": t.name,
            "source": t.source,
            "metric": t.metric,
            "unit": t.unit,
            "op": t.op,
            "plan": t.plan,
            "goal": t.goal,
            "measured": self.measured,
            "verdict": self.verdict.value,
            "goal_verdict": self.goal_verdict.value,
            "plan_margin": self.plan_margin,
            "goal_margin": self.goal_margin,
            "low": None if self.estimate is None else self.estimate.low,
            "high": None if self.estimate is None else self.estimate.high,
            "n": None if self.estimate is None else self.estimate.n,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Threshold:
    group: str
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    min_rps: float | None = None


@dataclass(frozen=True)
class GateSettings:
    tolerance: float = 0.25
    alpha: float = 0.01
    min_rounds: int = 5
    quantile: float = 0.10
    tolerance_by_group: Mapping[str, float] = field(default_factory=dict)
    #: A/B (base and head in one run): the slowdown that counts, runs per side, time budget.
    ab_tolerance: float = 0.10
    ab_pairs: int = 3
    ab_budget_s: float = 1800.0

    def _group_tolerance(self, group: str) -> float | None:
        for prefix, tolerance in self.tolerance_by_group.items():
            if group == prefix or group.startswith(f"{prefix}."):
                return tolerance
        return None

    def tolerance_for(self, group: str) -> float:
        found = self._group_tolerance(group)
        return self.tolerance if found is None else found

    def ab_tolerance_for(self, group: str) -> float:
        """The A/B slowdown that counts for ``group``: ``ab_tolerance``, or the group's own
        tolerance when it is listed and larger. A group is listed because the same code runs at
        different speeds from one process to the next, and an A/B pair is two processes."""
        return max(self.ab_tolerance, self._group_tolerance(group) or 0.0)


@dataclass(frozen=True)
class Targets:
    targets: tuple[Target, ...]
    thresholds: tuple[Threshold, ...]
    window_s: float
    abort_on_breach_s: float
    gate: GateSettings
    path: Path
    #: Seconds at the start of a load run left out of every windowed and final figure.
    warmup_s: float = 0.0
    #: Above this share of one core, the load generator queues requests itself: its
    #: latencies are not the service's and load verdicts become inconclusive.
    saturation_cpu: float = 0.9

    def evaluate(
        self, figures: Mapping[str, float], scale: str | None = None
    ) -> list[TargetResult]:
        return [evaluate_one(t, figures, scale, self.saturation_cpu) for t in self.targets]

    def threshold(self, group: str) -> Threshold | None:
        return next((t for t in self.thresholds if t.group == group), None)


def _verdict(target: Target, estimate: Estimate | None, bound: float | None) -> Verdict:
    if bound is None:
        return Verdict.NO_FIGURE
    if estimate is None:
        return Verdict.NOT_MEASURED
    return target.judge(estimate, bound)


def saturated(target: Target, figures: Mapping[str, float], limit: float) -> str | None:
    """Why a load latency or throughput figure cannot be trusted (None: it can)."""
    root = target.metric.split(".", 1)[0]
    if not root.startswith("load") or not target.metric.endswith(("_ms", "rps")):
        return None
    cpu = figures.get(f"{root}.generator_cpu_p95")
    if cpu is None or cpu <= limit:
        return None
    return (
        f"load generator saturated (p95 CPU {cpu:.0%} of a core): latencies include client queuing"
    )


def evaluate_one(
    target: Target,
    figures: Mapping[str, float],
    scale: str | None = None,
    saturation_cpu: float = 0.9,
) -> TargetResult:
    """The target's verdicts on a run's figures (its interval included, where it has one)."""
    estimate = get(figures, target.metric)
    measured = None if estimate is None else estimate.value

    def margin(bound: float | None) -> float | None:
        return None if measured is None or bound is None else target.margin(measured, bound)

    inapplicable = target.not_applicable(figures, scale)
    untrusted = None if inapplicable else saturated(target, figures, saturation_cpu)

    def verdict(bound: float | None) -> Verdict:
        if inapplicable is not None:
            return Verdict.NO_FIGURE if bound is None else Verdict.NOT_APPLICABLE
        found = _verdict(target, estimate, bound)
        decided = found in (Verdict.PASS, Verdict.FAIL)
        return Verdict.INCONCLUSIVE if untrusted and decided else found

    return TargetResult(
        target,
        measured,
        verdict(target.plan),
        verdict(target.goal),
        margin(target.plan),
        margin(target.goal),
        estimate,
        inapplicable or untrusted or "",
    )


def _number(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetsError(f"{where}: {key} must be a number, not {value!r}")
    return float(value)


def _scale(raw: Mapping[str, Any], where: str, key: str = "min_scale") -> str | None:
    value = raw.get(key)
    if value is not None and value not in SCALE_ORDER:
        raise TargetsError(f"{where}: {key} must be one of {', '.join(SCALE_ORDER)}")
    return None if value is None else str(value)


def _requires(raw: Mapping[str, Any], where: str) -> dict[str, float]:
    table = raw.get("requires", {})
    if not isinstance(table, Mapping):
        raise TargetsError(f"{where}: requires must be a table of figure = minimum")
    return {str(k): v for k in table if (v := _number(table, k, f"{where} requires")) is not None}


def _target(raw: Mapping[str, Any], index: int) -> Target:
    where = f"target #{index + 1} ({raw.get('id', '?')})"
    for key in ("id", "name", "source", "metric", "unit", "op"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise TargetsError(f"{where}: {key} is required (a string)")
    if raw["op"] not in OPS:
        raise TargetsError(f"{where}: op must be one of {', '.join(OPS)}")
    target = Target(
        raw["id"],
        raw["name"],
        raw["source"],
        raw["metric"],
        raw["unit"],
        raw["op"],
        _number(raw, "plan", where),
        _number(raw, "goal", where),
        _scale(raw, where),
        _requires(raw, where),
        str(raw.get("applies_when", "")),
        _scale(raw, where, "max_scale"),
        str(raw.get("max_scale_why", "")),
    )
    if target.plan is None and target.goal is None:
        raise TargetsError(f"{where}: needs a plan figure, a goal, or both")
    return target


def parse(data: Mapping[str, Any], path: Path = TARGETS_FILE) -> Targets:
    raw_targets = data.get("target", [])
    targets = tuple(_target(raw, i) for i, raw in enumerate(raw_targets))
    ids = [t.id for t in targets]
    if len(set(ids)) != len(ids):
        raise TargetsError("target ids must be unique")
    load = data.get("load", {})
    thresholds = tuple(
        Threshold(
            group,
            **{k: _number(v, k, f"load.thresholds.{group}") for k in v},
        )
        for group, v in load.get("thresholds", {}).items()
    )
    gate_raw = data.get("gate", {})
    gate = GateSettings(
        tolerance=float(gate_raw.get("tolerance", 0.25)),
        alpha=float(gate_raw.get("alpha", 0.01)),
        min_rounds=int(gate_raw.get("min_rounds", 5)),
        quantile=float(gate_raw.get("quantile", 0.10)),
        tolerance_by_group={k: float(v) for k, v in gate_raw.get("tolerance_by_group", {}).items()},
        ab_tolerance=float(gate_raw.get("ab", {}).get("tolerance", 0.10)),
        ab_pairs=int(gate_raw.get("ab", {}).get("pairs", 3)),
        ab_budget_s=float(gate_raw.get("ab", {}).get("budget_s", 1800)),
    )
    return Targets(
        targets,
        thresholds,
        float(load.get("window_s", 30)),
        float(load.get("abort_on_breach_s", 0)),
        gate,
        path,
        float(load.get("warmup_s", 0)),
        float(load.get("saturation_cpu", 0.9)),
    )


def load_targets(path: Path | None = None) -> Targets:
    path = path or TARGETS_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TargetsError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise TargetsError(f"{path}: {exc}") from None
    return parse(data, path)
