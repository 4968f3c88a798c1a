"""Exact-enough latency percentiles: a log-linear histogram, mergeable across processes.

Locust keeps response times in rounded buckets (two significant digits above 100 ms) and does not
merge percentiles from workers exactly. :class:`Histogram` records every value, in microseconds,
in HDR-style buckets: exact below ``2**SUB_BUCKET_BITS`` us, then ``2**(SUB_BUCKET_BITS - 1)``
linear sub-buckets per power of two, so a reported value is within ``RELATIVE_ERROR`` of the
recorded one. Two histograms merge by adding counts: merging equals recording the union.

:class:`WindowedStats` keeps one histogram and a failure count per (second, group), so a sliding
window and the whole run are both merges of seconds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from reports.uncertainty import Estimate, order_statistic_ranks

SUB_BUCKET_BITS: Final = 8
SUB_BUCKETS: Final = 1 << SUB_BUCKET_BITS
HALF: Final = SUB_BUCKETS // 2
#: Half a sub-bucket's width over its lowest value: the worst error of a reported midpoint.
RELATIVE_ERROR: Final = 1 / (2 * HALF)
OVERALL: Final = "overall"


def bucket_index(value_us: int) -> int:
    if value_us < SUB_BUCKETS:
        return max(value_us, 0)
    shift = value_us.bit_length() - SUB_BUCKET_BITS
    return SUB_BUCKETS + (shift - 1) * HALF + ((value_us >> shift) - HALF)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` in microseconds of the values that land in bucket ``index``."""
    if index < SUB_BUCKETS:
        return index, index + 1
    shift, sub = divmod(index - SUB_BUCKETS, HALF)
    shift += 1
    return (sub + HALF) << shift, (sub + HALF + 1) << shift


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_us: int = 0
    min_us: int | None = None
    max_us: int | None = None

    def record_ms(self, ms: float) -> None:
        self.record_us(round(ms * 1000))

    def record_us(self, value_us: int) -> None:
        value_us = max(value_us, 0)
        index = bucket_index(value_us)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total_us += value_us
        if self.min_us is None or value_us < self.min_us:
            self.min_us = value_us
        if self.max_us is None or value_us > self.max_us:
            self.max_us = value_us

    def merge(self, other: Histogram) -> Histogram:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total_us += other.total_us
        if other.min_us is not None and (self.min_us is None or other.min_us < self.min_us):
            self.min_us = other.min_us
        if other.max_us is not None and (self.max_us is None or other.max_us > self.max_us):
            self.max_us = other.max_us
        return self

    def copy(self) -> Histogram:
        return Histogram().merge(self)

    def percentile_ms(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (0-100), within :data:`RELATIVE_ERROR`."""
        if not self.count:
            return None
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within [0, 100], got {q}")
        return self.at_rank_ms(max(1, math.ceil(q / 100 * self.count)))

    def percentile_ci_ms(self, q: float) -> Estimate | None:
        """The ``q``-th percentile and its 95% order-statistic interval (distribution-free)."""
        value = self.percentile_ms(q)
        if value is None:
            return None
        low_rank, high_rank = order_statistic_ranks(self.count, q / 100)
        low, high = self.at_rank_ms(low_rank), self.at_rank_ms(high_rank)
        return Estimate(value, min(low, value), max(high, value), self.count)

    def at_rank_ms(self, rank: int) -> float:
        """The ``rank``-th smallest value (1-based), within :data:`RELATIVE_ERROR`."""
        if rank == self.count and self.max_us is not None:
            return self.max_us / 1000
        if rank == 1 and self.min_us is not None:
            return self.min_us / 1000
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                value = (low + high - 1) / 2
                floor = low if self.min_us is None else self.min_us
                ceiling = high if self.max_us is None else self.max_us
                return min(max(value, floor), ceiling) / 1000
        raise RuntimeError("histogram counts do not add up to its count")

    @property
    def mean_ms(self) -> float | None:
        return self.total_us / self.count / 1000 if self.count else None

    def buckets_ms(self) -> list[tuple[float, float, int]]:
        """``(low_ms, high_ms, count)`` of every non-empty bucket, ascending."""
        return [
            (low / 1000, high / 1000, self.counts[index])
            for index in sorted(self.counts)
            for low, high in [bucket_bounds(index)]
        ]

    def to_wire(self) -> list[Any]:
        """A msgpack- and JSON-friendly form (no integer map keys)."""
        return [sorted(self.counts.items()), self.count, self.total_us, self.min_us, self.max_us]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> Histogram:
        pairs, count, total, low, high = raw
        return cls({int(i): int(n) for i, n in pairs}, int(count), int(total), low, high)


@dataclass
class GroupStats:
    """One request group over some span: every response time and how many failed."""

    histogram: Histogram = field(default_factory=Histogram)
    failures: int = 0

    @property
    def count(self) -> int:
        return self.histogram.count

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.count if self.count else None

    def record(self, ms: float, failed: bool) -> None:
        self.histogram.record_ms(ms)
        self.failures += failed

    def merge(self, other: GroupStats) -> GroupStats:
        self.histogram.merge(other.histogram)
        self.failures += other.failures
        return self

    def to_wire(self) -> list[Any]:
        return [self.histogram.to_wire(), self.failures]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> GroupStats:
        return cls(Histogram.from_wire(raw[0]), int(raw[1]))


def merge_groups(parts: Iterable[Mapping[str, GroupStats]]) -> dict[str, GroupStats]:
    merged: dict[str, GroupStats] = {}
    for part in parts:
        for group, stats in part.items():
            merged.setdefault(group, GroupStats()).merge(stats)
    return merged


@dataclass
class WindowedStats:
    """Per-second, per-group stats. ``journeys`` are timed sequences, kept out of ``overall``."""

    journeys: frozenset[str] = frozenset()
    seconds: dict[int, dict[str, GroupStats]] = field(default_factory=lambda: defaultdict(dict))

    def record(self, second: int, group: str, ms: float, failed: bool) -> None:
        self.seconds[second].setdefault(group, GroupStats()).record(ms, failed)

    def drain(self) -> list[Any]:
        """Everything recorded since the last drain, as wire data (a worker's report)."""
        wire = [
            [second, [[g, s.to_wire()] for g, s in groups.items()]]
            for second, groups in self.seconds.items()
        ]
        self.seconds.clear()
        return wire

    def absorb(self, wire: list[Any]) -> None:
        for second, groups in wire:
            slot = self.seconds[int(second)]
            for group, raw in groups:
                slot.setdefault(group, GroupStats()).merge(GroupStats.from_wire(raw))

    def clear(self) -> None:
        self.seconds.clear()

    def span(self, first: int | None = None, last: int | None = None) -> dict[str, GroupStats]:
        """Merged stats of seconds ``first..last`` (inclusive), with ``overall`` added."""
        parts = [
            groups
            for second, groups in self.seconds.items()
            if (first is None or second >= first) and (last is None or second <= last)
        ]
        merged = merge_groups(parts)
        overall = GroupStats()
        for group, stats in merged.items():
            if group not in self.journeys:
                overall.merge(stats)
        merged[OVERALL] = overall
        return merged

    def series(self) -> list[dict[str, Any]]:
        """Per second and group: count, failures, p50 and p95 (for latency-over-time charts)."""
        rows = []
        for second in sorted(self.seconds):
            for group, stats in sorted(self.span(second, second).items()):
                h = stats.histogram
                rows.append(
                    {
                        "t": second,
                        "group": group,
                        "count": stats.count,
                        "failures": stats.failures,
                        "p50_ms": h.percentile_ms(50),
                        "p95_ms": h.percentile_ms(95),
                        "max_ms": None if h.max_us is None else h.max_us / 1000,
                    }
                )
        return rows
