"""The targets file: the plan's figures and our goals, and their verdicts on a run's figures.

A run's *figures* are one flat mapping from a metric key (``load.search.p95_ms``,
``saving.queries.by_job``, ...) to a number; benchmarks, the load test and the dataset each
contribute theirs. :func:`evaluate` compares them with every target.
"""

from __future__ import annotations

import operator
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

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
    NOT_MEASURED = "not measured"
    NO_FIGURE = "no figure"


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

    def holds(self, measured: float, bound: float) -> bool:
        return OPS[self.op](measured, bound)

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

    def tolerance_for(self, group: str) -> float:
        for prefix, tolerance in self.tolerance_by_group.items():
            if group == prefix or group.startswith(f"{prefix}."):
                return tolerance
        return self.tolerance


@dataclass(frozen=True)
class Targets:
    targets: tuple[Target, ...]
    thresholds: tuple[Threshold, ...]
    window_s: float
    abort_on_breach_s: float
    gate: GateSettings
    path: Path

    def evaluate(self, figures: Mapping[str, float]) -> list[TargetResult]:
        return [evaluate_one(t, figures.get(t.metric)) for t in self.targets]

    def threshold(self, group: str) -> Threshold | None:
        return next((t for t in self.thresholds if t.group == group), None)


def _verdict(target: Target, measured: float | None, bound: float | None) -> Verdict:
    if bound is None:
        return Verdict.NO_FIGURE
    if measured is None:
        return Verdict.NOT_MEASURED
    return Verdict.PASS if target.holds(measured, bound) else Verdict.FAIL


def evaluate_one(target: Target, measured: float | None) -> TargetResult:
    def margin(bound: float | None) -> float | None:
        return None if measured is None or bound is None else target.margin(measured, bound)

    return TargetResult(
        target,
        measured,
        _verdict(target, measured, target.plan),
        _verdict(target, measured, target.goal),
        margin(target.plan),
        margin(target.goal),
    )


def _number(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetsError(f"{where}: {key} must be a number, not {value!r}")
    return float(value)


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
    )
    return Targets(
        targets,
        thresholds,
        float(load.get("window_s", 30)),
        float(load.get("abort_on_breach_s", 0)),
        gate,
        path,
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
