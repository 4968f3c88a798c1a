"""Is a benchmark slower than its baseline? Pure statistics on raw rounds, no I/O.

A slowdown counts only when a low quantile of the rounds moved by more than the group's tolerance
AND a one-sided Mann-Whitney U test on the rounds is significant: contention on a shared machine
adds time to some rounds only, a real regression moves every round (``reports/gate.py`` runs it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from reports.figures import rounds
from reports.targets import GateSettings


class Change(StrEnum):
    OK = "ok"
    REGRESSION = "REGRESSION"
    IMPROVED = "improved"
    NEW = "new (no baseline)"
    GONE = "not run"
    FEW_ROUNDS = "too few rounds"


@dataclass(frozen=True)
class Comparison:
    benchmark: str
    group: str
    baseline_median: float | None
    now_median: float | None
    change: float | None
    p_value: float | None
    alpha: float
    tolerance: float
    verdict: Change

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "group": self.group,
            "baseline_median_s": self.baseline_median,
            "now_median_s": self.now_median,
            "change": self.change,
            "p_value": self.p_value,
            "significant": self.significant,
            "tolerance": self.tolerance,
            "verdict": self.verdict.value,
        }


def compare_samples(
    baseline: Sequence[float],
    now: Sequence[float],
    tolerance: float,
    alpha: float,
    min_rounds: int,
    quantile: float = 0.5,
) -> tuple[float, float | None, Change]:
    """(relative change of the ``quantile`` of the rounds, p-value of the one-sided Mann-Whitney
    U test in the direction of the change, verdict)."""
    change = float(np.quantile(now, quantile) / np.quantile(baseline, quantile)) - 1.0
    if min(len(baseline), len(now)) < min_rounds:
        return change, None, Change.FEW_ROUNDS
    if change > 0:
        p = float(mannwhitneyu(now, baseline, alternative="greater").pvalue)
        slower = change > tolerance and p < alpha
        return change, p, Change.REGRESSION if slower else Change.OK
    p = float(mannwhitneyu(now, baseline, alternative="less").pvalue)
    faster = -change > tolerance and p < alpha
    return change, p, Change.IMPROVED if faster else Change.OK


def _median(bench: Mapping[str, Any]) -> float | None:
    median = (bench.get("stats") or {}).get("median")
    return float(median) if isinstance(median, int | float) else None


def low_quantile(bench: Mapping[str, Any], quantile: float) -> float:
    """The ``quantile`` of a benchmark's rounds; infinity without rounds, so any run beats it."""
    data = rounds(bench)
    return float(np.quantile(data, quantile)) if data else float("inf")


def compare_runs(
    baseline: Mapping[str, Mapping[str, Any]],
    now: Mapping[str, Mapping[str, Any]],
    gate: GateSettings,
) -> list[Comparison]:
    """Both sides map a benchmark's full name to ``{"group", "stats": {"median", "data"}}``."""
    results: list[Comparison] = []
    for name in sorted(set(baseline) | set(now)):
        base, current = baseline.get(name), now.get(name)
        group = str(((current or base) or {}).get("group") or "ungrouped")
        tolerance = gate.tolerance_for(group)
        base_median = _median(base) if base else None
        now_median = _median(current) if current else None
        change: float | None = None
        p_value: float | None = None
        if current is None:
            verdict = Change.GONE
        elif base is None:
            verdict = Change.NEW
        else:
            base_rounds, now_rounds = rounds(base), rounds(current)
            if base_rounds and now_rounds:
                change, p_value, verdict = compare_samples(
                    base_rounds, now_rounds, tolerance, gate.alpha, gate.min_rounds, gate.quantile
                )
            else:
                verdict = Change.FEW_ROUNDS
        results.append(
            Comparison(
                name, group, base_median, now_median, change, p_value, gate.alpha, tolerance,
                verdict,
            )
        )  # fmt: skip
    return results
