"""How sure a figure is: a 95% confidence interval for every median, ratio and percentile.

* A median of timed rounds: percentile bootstrap over the rounds.
* A same-run ratio (saving ``1 - after/before``, speed-up ``before/after``): both sides'
  rounds resampled independently, the ratio of the resampled medians.
* A load percentile from the exact histogram of ``n`` latencies: the distribution-free interval
  of order statistics (the ranks whose binomial probability covers 95%), read off the histogram.
* A rate (errors, cache hits): the Wilson score interval.

Resampling is seeded, so the same rounds give the same interval in every run and every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.stats import binom, norm

CONFIDENCE: Final = 0.95
RESAMPLES: Final = 2000
SEED: Final = 20261128
#: Below this many rounds a median has no interval worth the name (the bootstrap of 2 rounds
#: spans their range at best): the figure is reported with n and no interval.
MIN_ROUNDS: Final = 5


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure with its 95% interval and the number of observations behind it."""

    value: float
    low: float
    high: float
    n: int

    @classmethod
    def exact(cls, value: float, n: int = 1) -> Estimate:
        """A figure without sampling error (a count, a configured size)."""
        return cls(value, value, value, n)

    @property
    def width(self) -> float:
        return self.high - self.low


def _rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def _resampled_medians(
    rounds: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    picks = rng.integers(0, len(rounds), size=(RESAMPLES, len(rounds)))
    return np.asarray(np.median(rounds[picks], axis=1), dtype=np.float64)


def _interval(samples: npt.NDArray[np.float64]) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def median_ci(rounds: Sequence[float]) -> Estimate | None:
    """The median of the rounds and its bootstrap interval (None without rounds)."""
    data = np.asarray(rounds, dtype=np.float64)
    if data.size == 0:
        return None
    median = float(np.median(data))
    if data.size < MIN_ROUNDS:
        return Estimate(median, float(data.min()), float(data.max()), int(data.size))
    low, high = _interval(_resampled_medians(data, _rng()))
    return Estimate(median, min(low, median), max(high, median), int(data.size))


def _ratio_ci(
    before: Sequence[float],
    after: Sequence[float],
    statistic: Callable[[Any, Any], Any],
) -> Estimate | None:
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.size == 0 or a.size == 0 or np.median(b) <= 0 or np.median(a) <= 0:
        return None
    value = float(statistic(np.median(b), np.median(a)))
    n = int(min(b.size, a.size))
    rng = _rng()
    samples = np.asarray(
        statistic(_resampled_medians(b, rng), _resampled_medians(a, rng)), dtype=np.float64
    )
    if n < MIN_ROUNDS:
        return Estimate(value, float(samples.min()), float(samples.max()), n)
    low, high = _interval(samples)
    return Estimate(value, min(low, value), max(high, value), n)


def saving_ci(before: Sequence[float], after: Sequence[float]) -> Estimate | None:
    """``1 - median(after)/median(before)`` with both sides resampled."""
    return _ratio_ci(before, after, lambda b, a: 1.0 - a / b)


def speedup_ci(before: Sequence[float], after: Sequence[float]) -> Estimate | None:
    """``median(before)/median(after)`` with both sides resampled."""
    return _ratio_ci(before, after, lambda b, a: b / a)


def order_statistic_ranks(n: int, quantile: float) -> tuple[int, int]:
    """1-based ranks (low, high) of the sorted sample that bound the ``quantile`` with 95%
    confidence, whatever the distribution (the binomial interval of order statistics)."""
    if n <= 0:
        raise ValueError("no observations")
    tail = (1.0 - CONFIDENCE) / 2
    low = int(binom.ppf(tail, n, quantile))
    high = int(binom.ppf(1.0 - tail, n, quantile)) + 1
    return max(1, low), min(n, high)


def quantile_ci(samples: Sequence[float], quantile: float) -> Estimate | None:
    """A quantile (0-1, nearest rank) of raw samples and its order-statistic interval."""
    ordered = sorted(samples)
    if not ordered:
        return None
    n = len(ordered)
    value = ordered[max(1, math.ceil(quantile * n)) - 1]
    low, high = order_statistic_ranks(n, quantile)
    return Estimate(value, min(ordered[low - 1], value), max(ordered[high - 1], value), n)


def proportion_ci(successes: int, n: int) -> Estimate | None:
    """A rate (errors per request, cache hits per lookup) and its Wilson score interval."""
    if n <= 0:
        return None
    z = float(norm.ppf(1.0 - (1.0 - CONFIDENCE) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)), n)


# --- intervals inside a run's flat figures ------------------------------------------------------
# A figure ``k`` carries its interval as ``k:low``, ``k:high`` and ``k:n``, so intervals travel
# through every file and merge that figures already go through (load.json, bench.json, the
# history) without a second mapping to keep in step.

SUFFIXES: Final = (":low", ":high", ":n")


def is_interval_key(key: str) -> bool:
    return key.endswith(SUFFIXES)


def put(figures: dict[str, float], key: str, estimate: Estimate | None) -> None:
    """Store ``estimate`` (and its interval) under ``key``; nothing for None."""
    if estimate is None:
        return
    figures[key] = estimate.value
    figures[f"{key}:low"] = estimate.low
    figures[f"{key}:high"] = estimate.high
    figures[f"{key}:n"] = float(estimate.n)


def get(figures: Mapping[str, float], key: str) -> Estimate | None:
    """The figure with its interval; a figure stored without one is exact (a count, a size)."""
    value = figures.get(key)
    if value is None:
        return None
    low, high, n = (figures.get(f"{key}{s}") for s in SUFFIXES)
    if low is None or high is None:
        return Estimate.exact(float(value))
    return Estimate(float(value), float(low), float(high), int(n or 0))


def values_only(figures: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in figures.items() if not is_interval_key(k)}
