"""The scale curve in the report, from the curve module's own figures, and Locust's p95 beside
the service's histogram, from real ``/metrics`` text and the load runner's own stats."""

from __future__ import annotations

import json
import math
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks.scale_curve import PAGED, ROUTES, RouteLatency, figures_of
from reference.web.metrics import Metrics
from reports import bench, uncertainty
from reports.curve import Curve
from reports.latency import WindowedStats
from reports.report import RunData, render_curve_page, render_html, write_curve_page
from reports.service_metrics import compare_with_service, disagreement_lines
from reports.targets import load_targets
from reports.thresholds import load_figures
from tests.report_data import synthetic_run

TARGETS = load_targets()
SCALES = {"plan": 10_000, "100k": 100_000, "1m": 1_000_000}
#: p50 of each route at 10k assets, and how much it grows per tenfold history.
SHAPES = {
    "workspace_first": (4.0, 1.0),
    "search_text_high": (5.0, 3.0),
    "duplicates_warm": (10.0, 4.0),
}


def measured(route: str, scale: str, rng: random.Random) -> RouteLatency:
    """What ``measure_scale`` makes of 200 timed requests: p50 and p95 with their intervals."""
    start, growth = SHAPES.get(route, (3.0, 1.05))
    centre = start * growth ** math.log10(SCALES[scale] / 10_000)
    timings = [centre * rng.lognormvariate(0, 0.25) for _ in range(200)]
    p50, p95 = uncertainty.quantile_ci(timings, 0.5), uncertainty.quantile_ci(timings, 0.95)
    return RouteLatency(route, scale, p50, p95)


def curve_document(*, plans: bool = False, commit: str = "c" * 40) -> dict[str, object]:
    """A ``curve.json`` as ``python -m benchmarks.scale_curve`` writes it."""
    rng = random.Random(16)
    routes = [*ROUTES, "workspace_deep"]
    results = [measured(r, s, rng) for s in SCALES for r in routes if (r, s) != ("groups", "1m")]
    results.append(RouteLatency("groups", "1m", None, None, {503: 3}))
    meta: dict[str, object] = {
        "scales": SCALES,
        "requests": 200,
        "warmup": 20,
        "routes": {**ROUTES, "workspace_deep": "/v1/workspace?limit=50&cursor=<middle>"},
        "paged": sorted(PAGED),
        "measured_at": "2026-11-28T06:00:00+00:00",
        "seconds": 312.0,
        "commit": {"commit": commit, "short": commit[:10], "dirty": False, "subject": "curve"},
        "machine": {"cores": 2},
        "load_average": {"start": [1.5, 1.0, 0.5], "end": [2.25, 1.5, 1.0]},
    }
    if plans:
        meta["plans"] = {
            "search_text_high": {
                "1m": "Limit (actual rows=50)\n  ->  Index Scan using assets_quality_idx",
                "plan": "Limit (actual rows=50)\n  ->  Bitmap Heap Scan on assets",
            }
        }
    return {"figures": figures_of(results, list(SCALES)), "meta": meta}


def read_back(document: dict[str, object], tmp_path: Path) -> Curve:
    """Through the file and the bench's own reader, as ``make bench`` gets it."""
    path = tmp_path / "curve.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    figures, meta = bench.read_component(path)
    return Curve(figures, meta)


def section(html: str) -> str:
    found = re.search(r"<section id='curve'>.*?</section>", html, flags=re.DOTALL)
    assert found, "no scale curve section"
    return found.group(0)


def row(html: str, attribute: str, value: str) -> str:
    found = re.search(rf"<tr {attribute}='{value}'.*?</tr>", html, flags=re.DOTALL)
    assert found, f"no row {attribute}={value}"
    return found.group(0)


def test_no_curve_no_section_and_the_target_is_not_applicable():
    run = synthetic_run(TARGETS)
    del run.figures["curve.flatness_p95"]
    html = render_html(run)
    assert "id='curve'" not in html
    assert "class='na' title=" in row(html, "data-target", "curve_flat")
    assert "curve_flat: needs curve.flatness_p95 &gt;= 0 (this run: absent)" in html


def test_curve_section_draws_each_route_on_a_log_axis(tmp_path):
    run = synthetic_run(TARGETS)
    run.curve = read_back(curve_document(), tmp_path)
    html = section(render_html(run))
    charts = re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)
    assert len(charts) >= 4
    for chart in charts:
        ET.fromstring(chart)  # noqa: S314 - our own generated markup
        assert "(log scale)" in chart
    first = charts[0]
    ticks = {
        label: float(x)
        for x, label in re.findall(r"<text x='([\d.]+)' y='[\d.]+' text-anchor='middle' "
                                   r"fill='#555'>(10k|100k|1M)</text>", first)
    }  # fmt: skip
    assert set(ticks) == {"10k", "100k", "1M"}
    # Tenfold steps are equal steps on a log axis.
    assert ticks["100k"] - ticks["10k"] == pytest.approx(ticks["1M"] - ticks["100k"], abs=0.2)
    drawn = " ".join(charts)
    for route in [*ROUTES, "workspace_deep"]:
        assert f"<title>{route}</title>" in drawn, route
        assert f"data-route='{route}'" in html
    # Error bars: three lines per point with an interval (a stem and two caps).
    assert first.count("<line") > 3 * 2 * 3


def test_line_chart_puts_y_on_a_log_axis_only_when_asked_or_spanning_orders():
    from reports import svg

    wide = [svg.Series("cold", [1.0, 1000.0], [1e4, 1e6], intervals=[(0.8, 1.2), None])]
    narrow = [svg.Series("warm", [3.0, 4.0], [1e4, 1e6])]
    label = "latency, ms (log scale)"
    assert label in svg.line_chart("t", wide, x_label="x", y_label="latency, ms", y_log=None)
    assert label not in svg.line_chart("t", wide, x_label="x", y_label="latency, ms")
    assert label not in svg.line_chart("t", narrow, x_label="x", y_label="latency, ms", y_log=None)


def test_curve_table_and_target_judged_from_the_curve(tmp_path):
    run = synthetic_run(TARGETS)
    del run.figures["curve.flatness_p95"]
    run.curve = read_back(curve_document(), tmp_path)
    html = render_html(run)
    curve = section(html)
    # search_text_high grows 3x per tenfold: 9x at 1M, beyond the 1.5x goal.
    high = row(curve, "data-route", "search_text_high")
    assert "class='num fail'" in high
    flat = row(curve, "data-route", "workspace_first")
    assert "class='num pass'" in flat
    # duplicates_warm is not paged: its growth is shown, not judged.
    duplicates = row(curve, "data-route", "duplicates_warm")
    for judged_only in ("paged", "pass", "fail"):
        assert judged_only not in duplicates
    assert "failed: 3 answers not 200" in row(curve, "data-route", "groups")
    expected = uncertainty.get(run.curve.figures, "curve.search_text_high.100k.p95_ms")
    assert expected is not None
    assert f"{expected.value:.3g}" in high or f"{expected.value:.1f}" in high
    judged = row(curve, "data-target", "curve_flat")
    assert "data-verdict='not yet'" in judged
    # About 9x (3x per tenfold over two tenfolds), the worst paged route's growth.
    median = re.search(r"<td class='num'>([\d.]+)x</td><td class='num'>\[", judged)
    assert median is not None
    assert 8.0 <= float(median.group(1)) <= 10.0
    # The bench's own table points to the section and its figures stay out of the run's.
    assert "curve_flat: judged in the scale curve section below" in html
    assert "curve.flatness_p95" not in run.figures


def test_curve_says_when_and_at_which_commit(tmp_path):
    run = synthetic_run(TARGETS)
    run.curve = read_back(curve_document(commit="c" * 40), tmp_path)
    text = section(render_html(run))
    assert "2026-11-28T06:00:00+00:00" in text
    assert "commit cccccccccc" in text
    assert "Not this run&#39;s commit (0000000000)" in text
    assert "start 1.50, end 2.25, on 2 cores" in text  # the load average
    run.curve = Curve(run.curve.figures, {}, "2026-11-27T10:00:00+00:00")
    text = section(render_html(run))
    assert "not recorded in curve.json (file written 2026-11-27T10:00:00+00:00)" in text


def test_plans_in_collapsible_blocks_only_when_recorded(tmp_path):
    run = synthetic_run(TARGETS)
    run.curve = read_back(curve_document(), tmp_path)
    assert "<details>" not in section(render_html(run))
    run.curve = read_back(curve_document(plans=True), tmp_path)
    text = section(render_html(run))
    block = re.search(r"<details><summary>search_text_high</summary>.*?</details>", text, re.S)
    assert block
    assert block.group(0).index("10k (plan)") < block.group(0).index("1M (1m)")
    assert "Index Scan using assets_quality_idx" in block.group(0)


def test_bench_scale_page_is_the_section_alone(tmp_path):
    curve = read_back(curve_document(), tmp_path)
    page = write_curve_page(curve, tmp_path / "out" / "curve.html", TARGETS)
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert section(html)
    assert "id='targets'" not in html
    assert html == render_curve_page(curve, TARGETS)


def test_make_bench_keeps_the_latest_curve_in_its_run(tmp_path):
    latest = tmp_path / "curve.json"
    run = bench.Bench(scale="tiny", targets=TARGETS, out_dir=tmp_path / "run")
    run.figures_dir.mkdir(parents=True)
    assert run._latest_curve() is None
    run.curve_file = latest
    assert run._latest_curve() is None
    latest.write_text(json.dumps(curve_document()))
    found = run._latest_curve()
    assert found is not None
    assert found.meta["measured_at"] == "2026-11-28T06:00:00+00:00"
    assert (run.figures_dir / "curve.json").read_bytes() == latest.read_bytes()
    latest.write_text("[]")
    assert run._latest_curve() is None


# --- Locust's p95 beside the service's own histogram -------------------------------------------


def client_figures(workspace_ms: float, search_ms: float) -> dict[str, float]:
    """The load runner's figures from its exact per-second stats."""
    stats = WindowedStats()
    rng = random.Random(15)
    for second in range(30):
        for _ in range(20):
            stats.record(second, "workspace_page", workspace_ms * rng.uniform(0.9, 1.0), False)
            stats.record(second, "search", search_ms * rng.uniform(0.9, 1.0), False)
    return load_figures(stats.span(), 30, prefix="load")


def service_scrapes(workspace_s: float, search_s: float) -> tuple[str, str]:
    """``/metrics`` at the end of the warm-up and at the end of the run."""
    metrics = Metrics()
    workspace = metrics.request_seconds.labels("GET", "/v1/workspace", "200").observe
    search = metrics.request_seconds.labels("GET", "/v1/search", "200").observe
    for _ in range(50):
        workspace(0.9)  # the warm-up's cold start: not in the client's figures
    before = metrics.exposition().decode()
    for _ in range(600):
        workspace(workspace_s)
        search(search_s)
    return before, metrics.exposition().decode()


def test_locust_and_the_service_agree_and_disagree_per_route():
    before, after = service_scrapes(0.004, 0.004)  # both in the (3, 5] ms bucket
    figures = client_figures(workspace_ms=5.5, search_ms=40.0)
    found = compare_with_service(figures, "load", after, before)
    assert set(found) == {"workspace_page", "search"}
    assert found["workspace_page"]["service_p95_bucket_ms"] == pytest.approx([3.0, 5.0])
    assert not found["workspace_page"]["disagree"]
    assert found["search"]["disagree"]
    assert found["search"]["sure"]
    assert found["search"]["n"] == 600
    assert found["search"]["client_p95_ms"] == pytest.approx(figures["load.search.p95_ms"])
    (line,) = disagreement_lines(found)
    assert line.startswith("search: Locust p95 ")
    assert "(3, 5] ms" in line
    # Without the warm-up's scrape its cold start counts: the service's p95 is 0.9 s.
    whole = compare_with_service(figures, "load", after)
    assert whole["workspace_page"]["service_p95_bucket_ms"] == pytest.approx([750.0, 1000.0])
    assert whole["workspace_page"]["disagree"]
    assert compare_with_service({}, "load", after, before) == {}


def test_a_disagreement_on_a_few_requests_is_not_sure():
    before, after = service_scrapes(0.004, 0.004)
    stats = WindowedStats()
    for second, ms in enumerate((4.1, 4.3, 4.4, 40.0)):
        stats.record(second, "search", ms, False)
    figures = load_figures(stats.span(), 4, prefix="load")
    found = compare_with_service(figures, "load", after, before)["search"]
    assert found["disagree"]
    assert not found["sure"]
    assert found["n"] == 4
    (line,) = disagreement_lines({"search": found})
    assert "not sure: n = 4" in line
    run = synthetic_run(TARGETS)
    run.meta["load"] = {"service_p95": {"window": "after the warm-up", "groups": {"search": found}}}
    cell = row(render_html(run), "data-group", "search")
    assert "class='inconclusive'>apart, not sure" in cell


def test_report_and_console_flag_a_disagreement():
    targets = TARGETS
    before, after = service_scrapes(0.004, 0.004)
    groups = compare_with_service(client_figures(5.5, 40.0), "load", after, before)
    run = synthetic_run(targets)
    run.meta["load"] = {"service_p95": {"window": "after the warm-up", "groups": groups}}
    html = render_html(run)
    table = re.search(r"<table id='client-service'>.*?</table>", html, flags=re.DOTALL)
    assert table
    search = row(table.group(0), "data-group", "search")
    assert "class='fail'>DISAGREE: Locust" in search
    assert "<code>GET /v1/search</code>" in search
    assert "class='pass'>agree" in row(table.group(0), "data-group", "workspace_page")
    assert "unified: after the warm-up" in html
    runner = bench.Bench(scale="tiny", targets=targets, out_dir=Path("unused"))
    runner.run = run
    (line,) = runner.disagreements()
    assert line.startswith("client vs service (unified): search: Locust p95")
    del run.meta["load"]
    assert "id='client-service'" not in render_html(run)


def test_run_without_curve_field_renders(tmp_path):
    run = RunData(scale="tiny", targets=TARGETS)
    assert "id='curve'" not in render_html(run)
