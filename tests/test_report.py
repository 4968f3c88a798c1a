"""The report, summary, verdict/exit-code logic and history, from synthetic figures."""

from __future__ import annotations

import itertools
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from reports import bench, history, svg
from reports.report import Step, StepStatus, outcome, render_html, summarize, write_outputs
from reports.targets import Verdict, load_targets
from tests.report_data import PASSING, synthetic_run

REAL_TARGETS = load_targets()


@pytest.fixture
def targets():
    return REAL_TARGETS


def parse_svg(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - our own generated markup


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL)


def test_all_targets_holding_pass_with_exit_zero(targets):
    result = outcome(synthetic_run(targets))
    assert result.verdict is Verdict.PASS
    assert result.exit_code == 0
    assert result.failures == []
    assert result.goals_met


def test_one_plan_target_missed_fails_and_names_it(targets):
    run = synthetic_run(targets, overrides={"load.search.p95_ms": 750.0})
    result = outcome(run)
    assert result.exit_code == 1
    assert len(result.failures) == 1
    assert "search_response" in result.failures[0]


def test_unmeasured_plan_target_fails(targets):
    run = synthetic_run(targets)
    del run.figures["saving.queries.by_job"]
    result = outcome(run)
    assert result.exit_code == 1
    assert any("query_by_job" in f and "not measured" in f for f in result.failures)


def test_goal_missed_passes_unless_strict(targets):
    run = synthetic_run(targets, overrides={"load.search.p95_ms": 120.0})
    lenient = outcome(run)
    assert lenient.exit_code == 0
    assert not lenient.goals_met
    run.strict = True
    strict = outcome(run)
    assert strict.exit_code == 1
    assert any("search_response" in f and "STRICT" in f for f in strict.failures)


def test_goal_only_target_missed_fails_only_strict(targets):
    run = synthetic_run(targets, overrides={"speedup.dedup.lsh_vs_all_pairs": 2.0})
    assert outcome(run).exit_code == 0
    run.strict = True
    assert outcome(run).exit_code == 1


def test_failed_step_fails_the_run_and_says_where_it_stopped(targets):
    run = synthetic_run(targets)
    run.steps.append(Step("load_legacy", "load test, legacy", StepStatus.FAILED, 1.0, "boom"))
    result = outcome(run)
    assert result.exit_code == 1
    assert result.stopped_at == "load_legacy"
    html = render_html(run)
    assert "stopped at step" in html
    assert "boom" in html


def test_broken_targets_file_fails_the_run(targets, tmp_path):
    """The demonstration of a deliberately broken target: an impossible plan figure."""
    text = targets.path.read_text(encoding="utf-8")
    broken = tmp_path / "targets.toml"
    broken.write_text(
        text.replace(
            'metric = "saving.queries.by_job"\nunit = "saving"\nop = ">="\nplan = 0.80',
            'metric = "saving.queries.by_job"\nunit = "saving"\nop = ">="\nplan = 1.50',
        ),
        encoding="utf-8",
    )
    run = synthetic_run(load_targets(broken))
    result = outcome(run)
    assert result.exit_code == 1
    assert any("query_by_job" in f for f in result.failures)
    row = re.search(r"<tr data-target='query_by_job'.*?</tr>", render_html(run), re.DOTALL)
    assert row is not None
    assert "<td class='fail'>fail</td>" in row.group(0)


def test_targets_table_lists_every_target_with_colour(targets):
    html = render_html(synthetic_run(targets, overrides={"load.search.p95_ms": 750.0}))
    table = re.search(r"<table id='targets'>.*?</table>", html, re.DOTALL)
    assert table is not None
    rows = re.findall(r"<tr data-target='([^']+)' data-verdict='([^']+)'>", table.group(0))
    assert [r[0] for r in rows] == [t.id for t in targets.targets]
    assert dict(rows)["search_response"] == "fail"
    failing = re.search(r"<tr data-target='search_response'.*?</tr>", table.group(0), re.DOTALL)
    assert failing is not None
    assert "<td class='fail'>fail</td>" in failing.group(0)
    assert "td.fail{background:#ffebee" in html
    assert "<div class='banner fail'" in html


def test_passing_run_banner_is_green(targets):
    html = render_html(synthetic_run(targets))
    assert "<div class='banner pass'" in html
    assert "<td class='fail'>" not in html


def test_report_is_self_contained(targets):
    html = render_html(synthetic_run(targets))
    assert "http://" not in html
    assert "https://" not in html
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=""", html)
    assert "@import" not in html
    assert "url(" not in html


def test_report_svgs_are_valid_and_labelled(targets):
    html = render_html(synthetic_run(targets))
    charts = svgs(html)
    # 5 claim groups + load modes, 2 x (latency, throughput, distribution), trend charts
    assert len(charts) >= 12
    for chart in charts:
        root = parse_svg(chart)
        assert root.tag == "svg"
        assert root.get("viewBox")
        assert root.find("title") is not None
        assert root.find("title").text
        assert len(root.findall(".//text")) >= 3


def test_report_sections(targets):
    html = render_html(synthetic_run(targets))
    for needle in (
        "id='targets'",
        "id='percentiles'",
        "<details><summary>get_user_assets</summary>",
        "-&gt;  Index Scan using idx_images_user_created on images",
        "Execution Time: 0.34 ms",
        "Synthetic CPU",
        "15.20",
        "local server binaries",
        "assets of the heavy user",
        "Trend:",
        "Latency over time",
        "Latency distribution",
        "median time per operation, ms",
    ):
        assert needle in html, needle


def test_report_without_load_or_plans_or_history(targets):
    run = synthetic_run(targets)
    run.meta = {}
    run.plans = None
    run.history = []
    run.figures = {
        k: v for k, v in run.figures.items() if not k.startswith(("load", "speedup.batch"))
    }
    html = render_html(run)
    assert "Not measured in this run: Batch dismiss." in html
    assert "No time series from the load run" in html
    assert "No query plans recorded" in html
    assert "No earlier run on this machine" in html
    assert "No load-test figures" in html
    for chart in svgs(html):
        parse_svg(chart)


def test_summary_json_shape(targets, tmp_path):
    run = synthetic_run(targets, overrides={"load.search.p95_ms": 120.0})
    summary_path, html_path = write_outputs(run, tmp_path)
    summary = json.loads(summary_path.read_text())
    assert html_path.exists()
    assert summary["verdict"] == "pass"
    assert summary["goals_met"] is False
    search = next(t for t in summary["targets"] if t["id"] == "search_response")
    assert search["plan"] == 500
    assert search["goal"] == 50
    assert search["measured"] == 120.0
    assert search["unit"] == "ms"
    assert search["verdict"] == "pass"
    assert search["goal_verdict"] == "fail"
    assert {"name", "source"} <= set(search)
    assert summary["environment"]["database"]["server_version"] == "15.20"
    assert summary["dataset"]["heavy_assets"] == 10_000
    assert [s["name"] for s in summary["steps"]][:2] == ["database", "dataset"]
    assert summary == json.loads(json.dumps(summarize(run)))


def test_history_append_read_and_compact_rounds(tmp_path):
    path = tmp_path / "history.jsonl"
    for i, verdict in enumerate(["pass", "pass", "fail", "pass"]):
        history.append_run(
            history.RunRecord(
                time=f"t{i}",
                commit="c",
                fingerprint="fp",
                scale="plan",
                verdict=verdict,
                figures={"a": float(i), "b": 10.0},
            ),
            path,
        )
    history.append_run(history.RunRecord("t9", "c", "other", "plan", "pass", {"a": 100.0}), path)
    with path.open("a") as handle:
        handle.write("not json\n")
    records = history.read_history(path)
    assert len(records) == 5
    assert [r.line for r in records] == [1, 2, 3, 4, 5]
    assert len(history.comparable(records, "fp", "plan")) == 4
    assert history.comparable(records, "fp", "tiny") == []
    assert records[0].regression == "not checked"
    # No raw rounds: no line is a baseline for the gate.
    assert history.gate_baseline(records, "fp", "plan") is None

    rounds = [1e-3 * (1 + i / 997) for i in range(997)]
    compact = history.compact_rounds(rounds)
    assert len(compact) == history.MAX_ROUNDS
    assert compact[0] >= min(rounds)
    assert compact[-1] <= max(rounds)
    assert abs(compact[25] - 1.5e-3) < 2e-5
    assert history.compact_rounds([3.14159265, 1.0]) == [1.0, 3.142]


def test_history_path_env(tmp_path):
    assert history.history_path({"HISTORY_FILE": str(tmp_path / "h")}) == tmp_path / "h"
    assert history.history_path({}).name == "history.jsonl"


def test_trends_use_only_comparable_history(targets):
    run = synthetic_run(targets)
    html = render_html(run)
    assert "4 runs from" in html
    run.history = [replace(r, figures={}) for r in run.history[:1]]
    assert "2 runs from" in render_html(run)


def test_cache_hit_rate_from_metrics():
    exposition = (
        "# HELP url_cache_hits_total hits\n# TYPE url_cache_hits_total counter\n"
        'url_cache_hits_total{mode="unified"} 90.0\n'
        "# HELP url_cache_misses_total misses\n# TYPE url_cache_misses_total counter\n"
        'url_cache_misses_total{mode="unified"} 10.0\n'
    )
    assert bench.cache_hit_rate(exposition) == pytest.approx(0.9)
    assert bench.cache_hit_rate("") is None


@pytest.mark.parametrize(
    ("raw", "seconds"), [("60", 60.0), ("60s", 60.0), ("2m", 120.0), ("1h30m", 5400.0)]
)
def test_parse_duration(raw, seconds):
    assert bench.parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "abc", "5x", "m"])
def test_parse_duration_rejects(raw):
    with pytest.raises(ValueError, match="duration"):
        bench.parse_duration(raw)


def test_read_component_rejects_wrong_shape(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"figures": {"a": 1, "b": "no", "c": True}, "meta": {"m": 1}}))
    assert bench.read_component(path) == ({"a": 1.0}, {"m": 1})
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(bench.StepError, match="expected"):
        bench.read_component(path)


def test_bench_main_rejects_bad_settings(tmp_path):
    assert bench.main({"SCALE": "huge"}) == 2
    assert bench.main({"TARGETS_FILE": str(tmp_path / "missing.toml")}) == 2
    assert bench.main({"LOAD_RUN_TIME": "soon"}) == 2


def test_nice_ticks_cover_range():
    ticks = svg.nice_ticks(0, 87)
    assert ticks[0] == 0
    assert ticks[-1] >= 87
    assert all(b > a for a, b in itertools.pairwise(ticks))


def test_charts_escape_labels_and_handle_empty():
    chart = svg.bar_chart("a <b> & c", ["x<y"], [svg.Series("s&t", [1.0])], "ms")
    root = parse_svg(chart)
    assert root.find("title").text == "a <b> & c"
    empty = svg.line_chart("t", [svg.Series("s", [None])], x_label="x", y_label="y")
    assert "no data" in empty
    parse_svg(empty)
    assert "no data" in svg.histogram("h", [], [], x_label="ms")


def test_bins_from_samples_counts_everything():
    samples = [float(i % 50) for i in range(1000)] + [10_000.0]
    edges, counts = svg.bins_from_samples(samples, 10)
    assert len(edges) == 11
    assert sum(counts) == len(samples)


def test_passing_figures_cover_every_target(targets):
    assert {t.metric for t in targets.targets} <= set(PASSING)


def test_report_written_from_disk_is_utf8(targets, tmp_path: Path):
    _, html_path = write_outputs(synthetic_run(targets), tmp_path)
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_make_bench_line_has_rounds_and_the_gates_regression_check(tmp_path, targets):
    from tests.test_gate import query_pair, run_json

    run = bench.Bench(scale="plan", targets=targets, out_dir=tmp_path)
    step = Step("benchmarks", "microbenchmarks")
    assert run._regression_check([], "fp").regression == "not checked"
    step.status = StepStatus.OK
    run.run.steps.append(step)
    (tmp_path / "raw").mkdir()
    raw = json.dumps(run_json(*query_pair(10e-3, 1e-3)))
    (tmp_path / "raw" / "benchmarks.json").write_text(raw)
    first = run._regression_check([], "fp")
    assert (first.regression, first.source, len(first.rounds)) == ("no baseline", "bench", 2)
    history.append_run(replace(first, time="t1", figures={"a": 1.0}), tmp_path / "h.jsonl")
    second = run._regression_check(history.read_history(tmp_path / "h.jsonl"), "fp")
    assert second.regression == "ok"
    assert second.baseline.startswith("line 1 (bench")


def hot_path_section(html: str) -> str:
    found = re.search(r"<section id='s4b'>.*?</section>", html, re.DOTALL)
    assert found is not None
    return found.group(0)


def test_the_hot_path_section_shows_each_route_beside_its_floor(targets):
    section = hot_path_section(render_html(synthetic_run(targets)))
    rows = re.findall(r"<tr data-route='(\w+)'>(.*?)</tr>", section, re.DOTALL)
    assert [route for route, _ in rows] == ["workspace", "search"]
    cells = re.findall(r"<td class='num'>([^<]*)</td>", dict(rows)["workspace"])
    # requests/s, floor, ratio, CPU per request, p50, p99: median [interval]; then the rounds.
    assert cells == [
        "1,800 [1,620, 1,980]",
        "4,500 [4,050, 4,950]",
        "0.4 [0.36, 0.44]",
        "0.45 [0.405, 0.495]",
        "4.2 [3.78, 4.62]",
        "11 [9.9, 12.1]",
        "3",
    ]
    assert "<code>/v1/workspace?limit=50</code>" in dict(rows)["workspace"]
    assert "The floor is the same page built as JSON by PostgreSQL" in section
    assert "Each round runs wrk for 5 s, then the floor as long" in section


def test_the_hot_path_section_says_why_when_the_step_was_left_out(targets):
    run = synthetic_run(targets)
    run.figures = {k: v for k, v in run.figures.items() if not k.startswith("hot.")}
    del run.meta["hot"]
    run.steps = [s for s in run.steps if s.name != "hot_path"]
    assert "id='s4b'" not in render_html(run)  # no such step in the run: no section

    reason = "HOT_PATH=0 (the hot path targets read not applicable)"
    run.steps.append(Step("hot_path", "hot path", StepStatus.SKIPPED, detail=reason))
    section = hot_path_section(render_html(run))
    assert f"Not measured: {reason}" in section
    assert "<table id='hot-path'>" not in section
    rows = {r.target.id: r for r in run.results}
    assert rows["hot_workspace_rps"].goal_verdict is Verdict.NOT_APPLICABLE
    assert outcome(run).exit_code == 0
