"""The verdict rule: intervals, three values, scale applicability, a saturated load generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reports import uncertainty
from reports.ab import AbVerdict, hierarchical_ratio, judge_ratio
from reports.latency import Histogram
from reports.targets import Target, Verdict, evaluate_one, load_targets
from reports.uncertainty import Estimate

FAST = Target("t", "a latency", "test", "load.search.p95_ms", "ms", "<", plan=100.0, goal=20.0)
SAVING = Target("s", "a saving", "test", "saving.x", "saving", ">=", plan=0.5)


def figures_with(key: str, estimate: Estimate) -> dict[str, float]:
    figures: dict[str, float] = {}
    uncertainty.put(figures, key, estimate)
    return figures


@pytest.mark.parametrize(
    ("estimate", "plan", "goal"),
    [
        (Estimate(10, 8, 12, 30), Verdict.PASS, Verdict.PASS),
        (Estimate(19, 15, 25, 30), Verdict.PASS, Verdict.INCONCLUSIVE),
        (Estimate(90, 80, 110, 30), Verdict.INCONCLUSIVE, Verdict.FAIL),
        (Estimate(150, 120, 200, 30), Verdict.FAIL, Verdict.FAIL),
    ],
)
def test_a_target_passes_only_when_its_whole_interval_does(estimate, plan, goal):
    result = evaluate_one(FAST, figures_with(FAST.metric, estimate))
    assert (result.verdict, result.goal_verdict) == (plan, goal)
    assert result.estimate == estimate


def test_a_median_on_the_bound_with_no_spread_is_judged_by_the_median():
    exact = {SAVING.metric: 0.5}
    assert evaluate_one(SAVING, exact).verdict is Verdict.PASS
    assert evaluate_one(SAVING, {SAVING.metric: 0.49}).verdict is Verdict.FAIL


def test_a_figure_whose_interval_straddles_the_bound_is_inconclusive():
    # The case: 80.1% against 80%, a margin of +0%, is not a pass.
    saving = dataclasses.replace(SAVING, plan=0.8)
    result = evaluate_one(saving, figures_with(saving.metric, Estimate(0.801, 0.78, 0.82, 5)))
    assert result.verdict is Verdict.INCONCLUSIVE


def test_below_its_scale_a_target_is_not_applicable_and_says_why():
    target = dataclasses.replace(
        SAVING, min_scale="plan", applies_when="about a user with 10,000+ assets"
    )
    figures = {SAVING.metric: 0.1}
    small = evaluate_one(target, figures, "tiny")
    assert small.verdict is Verdict.NOT_APPLICABLE
    assert "SCALE=plan" in small.reason
    assert "10,000+" in small.reason
    assert evaluate_one(target, figures, "plan").verdict is Verdict.FAIL
    assert evaluate_one(target, figures, "1m").verdict is Verdict.FAIL


def test_above_its_largest_scale_a_target_is_not_applicable_and_says_why():
    target = dataclasses.replace(
        SAVING, max_scale="100k", applies_when="the plan's side loads the whole list"
    )
    figures = {SAVING.metric: 0.1}
    large = evaluate_one(target, figures, "1m")
    assert large.verdict is Verdict.NOT_APPLICABLE
    assert "SCALE=100k" in large.reason
    assert "whole list" in large.reason
    for scale in ("tiny", "plan", "100k"):
        assert evaluate_one(target, figures, scale).verdict is Verdict.FAIL


def test_a_target_that_needs_a_figure_is_not_applicable_without_it():
    target = dataclasses.replace(SAVING, requires={"load.measured_s": 60.0})
    assert evaluate_one(target, {SAVING.metric: 0.9}).verdict is Verdict.NOT_APPLICABLE
    short = {SAVING.metric: 0.9, "load.measured_s": 20.0}
    assert "this run: 20" in evaluate_one(target, short).reason
    long = {SAVING.metric: 0.9, "load.measured_s": 90.0}
    assert evaluate_one(target, long).verdict is Verdict.PASS


def test_the_targets_file_marks_what_needs_the_plan_scale():
    targets = {t.id: t for t in load_targets().targets}
    assert targets["assets_per_user"].min_scale == "plan"
    assert all(t.min_scale is None for t in targets.values() if t.metric.startswith("load."))
    assert targets["first_search"].max_scale == targets["search_vs_in_memory"].max_scale == "100k"


def test_a_saturated_load_generator_makes_latency_verdicts_inconclusive():
    figures = figures_with(FAST.metric, Estimate(10, 8, 12, 500))
    assert evaluate_one(FAST, figures).verdict is Verdict.PASS
    busy = {**figures, "load.generator_cpu_p95": 0.97}
    result = evaluate_one(FAST, busy, saturation_cpu=0.9)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "saturated" in result.reason
    # An error rate does not queue in the client: still judged.
    errors = dataclasses.replace(FAST, metric="load.overall.error_rate", plan=0.01, goal=None)
    rate = figures_with(errors.metric, Estimate(0.0, 0.0, 0.001, 5000))
    assert evaluate_one(errors, {**rate, "load.generator_cpu_p95": 0.97}).verdict is Verdict.PASS


def test_median_interval_covers_the_median_and_narrows_with_rounds():
    rng = np.random.default_rng(1)
    few = uncertainty.median_ci(list(rng.normal(10, 1, 8)))
    many = uncertainty.median_ci(list(rng.normal(10, 1, 400)))
    assert few is not None
    assert many is not None
    assert few.low <= few.value <= few.high
    assert many.width < few.width
    assert 9.7 < many.value < 10.3
    assert uncertainty.median_ci([]) is None


def test_a_ratio_interval_resamples_both_sides():
    rng = np.random.default_rng(2)
    before = list(rng.normal(100, 5, 50))
    after = list(rng.normal(50, 5, 50))
    saving = uncertainty.saving_ci(before, after)
    speedup = uncertainty.speedup_ci(before, after)
    assert saving is not None
    assert speedup is not None
    assert saving.low < 0.5 < saving.high
    assert speedup.low < 2.0 < speedup.high
    assert speedup.n == 50


def test_percentile_interval_from_an_exact_histogram_brackets_the_percentile():
    histogram = Histogram()
    for ms in range(1, 1001):
        histogram.record_ms(float(ms))
    p95 = histogram.percentile_ci_ms(95)
    assert p95 is not None
    assert p95.n == 1000
    assert p95.low < 950 < p95.high
    # The order-statistic interval of the p95 of 1,000 values spans about +-14 ranks.
    assert p95.low > 935
    assert p95.high < 965


def test_wilson_interval_of_a_rate():
    none_failed = uncertainty.proportion_ci(0, 1000)
    assert none_failed is not None
    assert none_failed.value == 0.0
    assert 0.0 < none_failed.high < 0.005
    assert uncertainty.proportion_ci(0, 0) is None


def test_intervals_travel_inside_the_flat_figures():
    figures: dict[str, float] = {}
    uncertainty.put(figures, "bench.x.median_s", Estimate(1.0, 0.9, 1.2, 7))
    assert uncertainty.get(figures, "bench.x.median_s") == Estimate(1.0, 0.9, 1.2, 7)
    assert uncertainty.values_only(figures) == {"bench.x.median_s": 1.0}
    assert uncertainty.get({"dataset.heavy_assets": 600.0}, "dataset.heavy_assets") == (
        Estimate.exact(600.0)
    )


def test_ab_ratio_judges_a_real_slowdown_and_not_process_to_process_speed():
    rng = np.random.default_rng(3)

    def runs(centre: float, spread: float, count: int = 4) -> list[list[float]]:
        return [list(rng.normal(centre, spread, 30)) for _ in range(count)]

    same = hierarchical_ratio(runs(1.0, 0.02), runs(1.0, 0.02))
    assert judge_ratio(same, 0.10) is AbVerdict.OK
    slower = hierarchical_ratio(runs(1.0, 0.02), runs(1.25, 0.02))
    assert judge_ratio(slower, 0.10) is AbVerdict.REGRESSION
    # Each process settles in one of two speeds: the runs disagree, the interval says so.
    bimodal = [list(rng.normal(c, 0.01, 30)) for c in (1.0, 1.5, 1.0, 1.5)]
    shifted = [list(rng.normal(c, 0.01, 30)) for c in (1.5, 1.0, 1.5, 1.5)]
    assert judge_ratio(hierarchical_ratio(bimodal, shifted), 0.10) is not AbVerdict.REGRESSION


def test_the_clients_percentiles_are_checked_against_the_services_histogram():
    from reference.web.metrics import Metrics
    from reports.service_metrics import disagreements, route_buckets, subtract

    metrics = Metrics()
    observe = metrics.request_seconds.labels("GET", "/v1/workspace", "200").observe
    observe(0.5)  # before the measured window: subtracted
    before = route_buckets(metrics.exposition().decode())
    for _ in range(100):
        observe(0.004)  # the service: 4 ms, in the (3, 5] ms bucket
    window = subtract(route_buckets(metrics.exposition().decode()), before)
    close = disagreements({"workspace_page": 5.5}, window)["workspace_page"]
    assert close["service_p95_bucket_ms"] == pytest.approx([3.0, 5.0])
    assert not close["disagree"]
    queued = disagreements({"workspace_page": 40.0}, window)["workspace_page"]
    assert queued["disagree"]
    impossible = disagreements({"workspace_page": 1.0}, window)["workspace_page"]
    assert impossible["disagree"]
    assert disagreements({"search": 3.0}, window) == {}


def test_a_regression_stands_only_when_fresh_runs_see_it_again():
    from reports.ab import AbComparison, SideRuns, confirm

    rng = np.random.default_rng(5)

    def side(centre: float, name: str = "b.py::t") -> SideRuns:
        runs = SideRuns()
        for _ in range(2):
            runs.add({"benchmarks": [{"fullname": name, "stats": {"data": list(
                rng.normal(centre, 0.01, 30))}}]}, 0.1)  # fmt: skip
        return runs

    # The first pairs: one whole head run sat apart, as unchanged code once did in CI.
    first = [[1.0] * 30, [1.0] * 30, [1.0] * 30]
    shifted = [[1.3] * 30, [1.3] * 30, [1.28] * 30]
    ratio = hierarchical_ratio(first, shifted)
    flagged = AbComparison("b.py::t", "", 1.0, 1.3, ratio, 0.10, judge_ratio(ratio, 0.10))
    assert flagged.verdict is AbVerdict.REGRESSION
    ok = AbComparison("b.py::u", "", 1.0, 1.0, ratio, 0.10, AbVerdict.OK)

    # Fresh pairs of unchanged code: the alarm does not repeat, so it is not a regression.
    unchanged = confirm([flagged, ok], side(1.0), side(1.0))
    assert unchanged[0].verdict is AbVerdict.INCONCLUSIVE
    assert unchanged[0].confirmation is not None
    assert 0.95 < unchanged[0].confirmation.value < 1.05
    assert unchanged[1] == ok  # only regressions are judged again
    # A real slowdown of 25% repeats and stands, with the fresh ratio beside the first.
    slower = confirm([flagged], side(1.0), side(1.25))[0]
    assert slower.verdict is AbVerdict.REGRESSION
    assert slower.confirmation is not None
    assert slower.confirmation.low > 1.1
    assert slower.as_dict()["confirmation"]["ratio"] == slower.confirmation.value
    # Slower, but by less than the tolerance: not confirmed.
    assert confirm([flagged], side(1.0), side(1.05))[0].verdict is AbVerdict.INCONCLUSIVE
    # Slower in one fresh head run of two only, as a noisy benchmark's false alarm in CI was
    # (again 1.11 [0.76, 1.41]): the interval reaches below 1, so not confirmed.
    noisy = SideRuns()
    for centre in (1.25, 0.98):
        noisy.add({"benchmarks": [{"fullname": "b.py::t", "stats": {"data": list(
            rng.normal(centre, 0.01, 30))}}]}, 0.1)  # fmt: skip
    seen = confirm([flagged], side(1.0), noisy)[0]
    assert seen.confirmation is not None
    assert seen.confirmation.low < 1.0
    assert seen.verdict is AbVerdict.INCONCLUSIVE
    # No fresh runs of that benchmark (they failed, or time ran out): the first verdict stands.
    kept = confirm([flagged], side(1.0, "other.py::t"), side(1.25, "other.py::t"))[0]
    assert kept.verdict is AbVerdict.REGRESSION
    assert kept.confirmation is None


def test_ab_judges_a_listed_group_at_its_own_larger_tolerance():
    """A/B compares two processes, so a group listed for its per-process speed levels (http,
    queries) is judged at that group's tolerance when it is larger than the A/B one: a steady
    15% slowdown of /healthz is within its bound there, and a regression in an unlisted group."""
    from reports.ab import SideRuns, compare
    from reports.targets import GateSettings

    settings = GateSettings(ab_tolerance=0.10, tolerance_by_group={"http": 0.25, "tight": 0.05})
    assert settings.ab_tolerance_for("http") == 0.25
    assert settings.ab_tolerance_for("http.sub") == 0.25
    assert settings.ab_tolerance_for("tight") == 0.10  # never below the A/B tolerance
    assert settings.ab_tolerance_for("urls") == 0.10
    rng = np.random.default_rng(7)

    def side(centre: float) -> SideRuns:
        runs = SideRuns()
        for _ in range(3):
            runs.add({"benchmarks": [
                {"fullname": f"b.py::{group}", "group": group,
                 "stats": {"data": list(rng.normal(centre, 0.005, 40))}}
                for group in ("http", "urls")
            ]}, 0.1)  # fmt: skip
        return runs

    judged = {c.group: c for c in compare(side(1.0), side(1.15), settings.ab_tolerance_for)}
    assert judged["urls"].verdict is AbVerdict.REGRESSION
    assert judged["urls"].tolerance == 0.10
    assert judged["http"].verdict is AbVerdict.OK
    assert judged["http"].tolerance == 0.25
