"""k6-style thresholds on exact histograms, the cache-hit target and the Prometheus parse."""

from __future__ import annotations

import dataclasses

import pytest

from reference.web.metrics import Metrics
from reports.latency import GroupStats, WindowedStats
from reports.service_metrics import UrlCacheCounters, parse_url_cache
from reports.targets import Threshold, load_targets
from reports.thresholds import (
    Outcome,
    breaches,
    cache_hit_as_check,
    cache_hit_check,
    evaluate,
    format_table,
    load_figures,
)
from reports.uncertainty import proportion_ci


def stats_of(times_ms: list[float], failures: int = 0) -> GroupStats:
    stats = GroupStats()
    for n, ms in enumerate(times_ms):
        stats.record(ms, n < failures)
    return stats


def test_latency_bound_is_strict_and_uses_the_percentile() -> None:
    threshold = Threshold("search", p95_ms=500, error_rate=0.01)
    fast = stats_of([10.0] * 95 + [900.0] * 5)  # p95 is the 95th value: 10 ms
    slow = stats_of([10.0] * 94 + [900.0] * 6)  # p95 lands in the tail
    assert not breaches(evaluate([threshold], {"search": fast}, 10))
    broken = breaches(evaluate([threshold], {"search": slow}, 10))
    assert [c.metric for c in broken] == ["p95_ms"]
    assert broken[0].measured == pytest.approx(900, rel=0.01)


def test_error_rate_and_min_rps() -> None:
    threshold = Threshold("overall", error_rate=0.01, min_rps=5)
    stats = {"overall": stats_of([5.0] * 100, failures=1)}
    checks = {c.metric: c for c in evaluate([threshold], stats, seconds=10)}
    assert checks["error_rate"].outcome is Outcome.BREACH  # 1% is not < 1%
    assert checks["min_rps"].outcome is Outcome.PASS  # 10 rps >= 5
    slow = {c.metric: c for c in evaluate([threshold], stats, seconds=100)}
    assert slow["min_rps"].outcome is Outcome.BREACH
    no_rates = evaluate([threshold], stats, seconds=100, rates=False)
    assert [c.metric for c in no_rates] == ["error_rate"]


def test_group_without_requests_is_not_judged() -> None:
    checks = evaluate([Threshold("download", p95_ms=1)], {}, 10)
    assert [c.outcome for c in checks] == [Outcome.NO_DATA]
    assert not breaches(checks)


def test_sliding_window_sees_only_recent_seconds() -> None:
    stats = WindowedStats()
    for second in range(100, 130):
        stats.record(second, "search", 900.0 if second < 110 else 20.0, False)
    threshold = Threshold("search", p95_ms=500)
    assert breaches(evaluate([threshold], stats.span(100, 129), 30))
    assert not breaches(evaluate([threshold], stats.span(115, 129), 15))


def test_thresholds_from_the_targets_file_cover_the_request_groups() -> None:
    targets = load_targets()
    groups = {t.group for t in targets.thresholds}
    assert {"overall", "workspace_page", "asset_cached", "search", "open_workspace"} <= groups
    assert targets.window_s > 0


def test_cache_hit_target_uses_the_plan_figure_and_its_interval() -> None:
    targets = load_targets()
    rates = (proportion_ci(9_500, 10_000), proportion_ci(500, 1_000), proportion_ci(19, 20), None)
    ok, low, few, missing = (cache_hit_check(targets, v) for v in rates)
    assert ok is not None
    assert low is not None
    assert few is not None
    assert missing is not None
    assert cache_hit_as_check(ok).outcome is Outcome.PASS
    assert cache_hit_as_check(low).outcome is Outcome.BREACH
    # 95% of 20 lookups: above 90%, but the interval reaches well below it.
    assert cache_hit_as_check(few).outcome is Outcome.INCONCLUSIVE
    assert cache_hit_as_check(missing).outcome is Outcome.NO_DATA
    without = dataclasses.replace(targets, targets=())
    assert cache_hit_check(without, ok.estimate) is None


def test_figures_use_the_contract_keys() -> None:
    stats = WindowedStats(journeys=frozenset({"open_workspace"}))
    stats.record(1, "search", 12.0, False)
    stats.record(1, "open_workspace", 300.0, False)
    figures = load_figures(stats.span(), 2, journeys={"open_workspace"})
    assert figures["load.search.count"] == 1
    assert figures["load.search.rps"] == 0.5
    assert figures["load.overall.p95_ms"] == pytest.approx(12, rel=0.01)
    assert figures["load.journey.open_workspace.p95_ms"] == pytest.approx(300, rel=0.01)
    legacy = load_figures(stats.span(), 2, prefix="load_legacy")
    assert "load_legacy.search.p50_ms" in legacy


def test_table_lists_every_check() -> None:
    checks = evaluate([Threshold("search", p95_ms=500, p99_ms=1)], {"search": stats_of([5.0])}, 1)
    table = format_table(checks)
    assert "search: p95_ms < 500" in table
    assert "BREACH" in table
    assert "pass" in table


PROMETHEUS_TEXT = """\
# HELP url_cache_hits_total Signed-URL cache hits
# TYPE url_cache_hits_total counter
url_cache_hits_total{mode="unified"} 90.0
url_cache_hits_total{mode="legacy"} 5.0
# HELP url_cache_misses_total Signed-URL cache misses
# TYPE url_cache_misses_total counter
url_cache_misses_total{mode="unified"} 10.0
url_cache_misses_created{mode="unified"} 1.7e9
# HELP db_pool_size Connections open in the pool
# TYPE db_pool_size gauge
db_pool_size 3.0
"""


def test_parse_url_cache_sums_labels_and_ignores_created() -> None:
    counters = parse_url_cache(PROMETHEUS_TEXT)
    assert counters == UrlCacheCounters(95.0, 10.0)
    delta = counters - UrlCacheCounters(45.0, 5.0)
    assert delta.hit_rate == pytest.approx(50 / 55)
    assert UrlCacheCounters().hit_rate is None


def test_parse_url_cache_levels() -> None:
    metrics = Metrics()
    for level, hits, misses in (("l1", 80, 20), ("l2", 15, 5)):
        metrics.url_cache_level_hits.labels("unified", level).inc(hits)
        metrics.url_cache_level_misses.labels("unified", level).inc(misses)
    text = metrics.exposition().decode()
    levels = parse_url_cache(text).levels
    assert (levels["l1"].hit_rate, levels["l2"].hit_rate) == (0.8, 0.75)
    earlier = UrlCacheCounters(levels={"l1": UrlCacheCounters(40.0, 10.0)})
    delta = (parse_url_cache(text) - earlier).levels
    assert (delta["l1"].hits, delta["l1"].misses, delta["l2"].hits) == (40.0, 10.0, 15.0)
