"""The load test's histogram: percentiles within its stated error, exact merging, wire form."""

from __future__ import annotations

import numpy as np
import pytest

from reports.latency import (
    OVERALL,
    RELATIVE_ERROR,
    GroupStats,
    Histogram,
    WindowedStats,
    bucket_bounds,
    bucket_index,
)

QUANTILES = (1, 10, 50, 90, 95, 99, 99.9, 100)


def sample_ms(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Lognormal around 20 ms with a heavy tail, plus sub-millisecond cache answers.
    slow = rng.lognormal(np.log(20), 1.0, n)
    fast = rng.uniform(0.05, 0.9, n // 10)
    return np.round(np.concatenate([slow, fast]), 3)


def histogram_of(values: np.ndarray) -> Histogram:
    h = Histogram()
    for v in values:
        h.record_ms(float(v))
    return h


def test_bucket_bounds_contain_their_values() -> None:
    for value in [0, 1, 255, 256, 257, 511, 512, 1023, 10**6, 123_456_789]:
        low, high = bucket_bounds(bucket_index(value))
        assert low <= value < high
        assert (high - 1 - low) / 2 <= max(low * RELATIVE_ERROR, 0.5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_numpy_within_stated_error(seed: int) -> None:
    values = sample_ms(seed)
    h = histogram_of(values)
    assert h.count == len(values)
    for q in QUANTILES:
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        measured = h.percentile_ms(q)
        assert measured is not None
        # Half a bucket, plus the microsecond rounding of each recorded value.
        assert abs(measured - exact) <= exact * RELATIVE_ERROR + 0.001, (q, measured, exact)


def test_extremes_are_exact() -> None:
    values = sample_ms(7)
    h = histogram_of(values)
    assert h.percentile_ms(100) == pytest.approx(values.max(), abs=0.0005)
    assert h.percentile_ms(0) == pytest.approx(values.min(), abs=0.0005)


def test_merging_equals_one_histogram_of_the_union() -> None:
    a, b, c = sample_ms(11, 3000), sample_ms(12, 5000), sample_ms(13, 1)
    merged = histogram_of(a).merge(histogram_of(b)).merge(histogram_of(c))
    union = histogram_of(np.concatenate([a, b, c]))
    assert merged == union
    for q in QUANTILES:
        assert merged.percentile_ms(q) == union.percentile_ms(q)


def test_wire_round_trip_preserves_everything() -> None:
    h = histogram_of(sample_ms(5, 500))
    assert Histogram.from_wire(h.to_wire()) == h


def test_empty_histogram_has_no_percentile() -> None:
    assert Histogram().percentile_ms(95) is None
    with pytest.raises(ValueError, match="percentile"):
        histogram_of(sample_ms(1, 10)).percentile_ms(101)


def test_windowed_stats_merge_workers_and_keep_journeys_out_of_overall() -> None:
    master = WindowedStats(journeys=frozenset({"open_workspace"}))
    worker_a, worker_b = WindowedStats(), WindowedStats()
    worker_a.record(100, "search", 10.0, False)
    worker_a.record(101, "search", 30.0, True)
    worker_b.record(101, "thumbnail", 2.0, False)
    worker_b.record(101, "open_workspace", 250.0, False)
    master.absorb(worker_a.drain())
    master.absorb(worker_b.drain())
    assert not worker_a.seconds

    whole = master.span()
    assert whole["search"].count == 2
    assert whole["search"].failures == 1
    assert whole[OVERALL].count == 3
    assert whole["open_workspace"].count == 1
    assert whole[OVERALL].histogram.max_us == 30_000

    last_second = master.span(101, 101)
    assert last_second["search"].count == 1
    assert last_second[OVERALL].error_rate == pytest.approx(0.5)


def test_group_stats_error_rate() -> None:
    stats = GroupStats()
    assert stats.error_rate is None
    stats.record(5.0, True)
    stats.record(5.0, False)
    assert stats.error_rate == 0.5
