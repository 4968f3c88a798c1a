"""Synthetic figures for report tests: every section filled, no live run needed."""

from __future__ import annotations

import math
import random

from reports.history import RunRecord
from reports.report import LOAD_GROUPS, RunData, Step, StepStatus
from reports.targets import Targets
from reports.uncertainty import Estimate, put

#: A passing value for every target of the real targets file, by metric.
PASSING = {
    "load.journey.open_workspace.p95_ms": 180.0,
    "load.asset_cached.p95_ms": 6.5,
    "load.search.p95_ms": 42.0,
    "bench.search.http_p95_ms": 21.0,
    "load.url_cache_hit_rate": 0.991,
    "load.overall.error_rate": 0.0004,
    "saving.url_generation.page_cold": 0.93,
    "saving.url_generation.page_warm": 0.97,
    "saving.url_generation.batch1000_cold": 0.95,
    "saving.url_generation.batch1000_warm": 0.985,
    "saving.url_generation.window_boundary": 0.91,
    "saving.queries.get_user_assets": 0.998,
    "saving.queries.session_only": 0.97,
    "saving.queries.by_job": 0.96,
    "saving.queries.filtered_first_page": 0.99,
    "dataset.heavy_assets": 100_000.0,
    "speedup.search.first_search": 12.0,
    "speedup.search.sql_vs_in_memory": 14.0,
    "speedup.dedup.lsh_vs_all_pairs": 38.0,
    "speedup.batch.dismiss_1000": 55.0,
    "bench.fixture_load.rows_per_s": 61_000.0,
    "browser.saving.first_thumbnails": 0.95,
    "browser.saving.lcp": 0.9,
    "browser.after.scroll_1k_dropped_share": 0.01,
    "browser.after.scroll_10k_dropped_share": 0.015,
    "browser.saving.heap_10k_mb": 0.85,
    "browser.saving.dom_nodes_10k": 0.97,
    "browser.saving.initial_kb": 0.96,
    "browser.after.mobile_ratio": 0.97,
    "browser.phone_rounds": 3,
    "browser.after.search_ms": 420.0,
    "browser.after.shortcuts_ok": 1.0,
    "browser.saving.total_kb": 0.6,
    "browser.after.console_error_count": 0.0,
    "curve.flatness_p95": 1.2,
    "hot.workspace.requests_per_s": 1800.0,
    "hot.search.requests_per_s": 1200.0,
}
HOT_ROUTES = {"workspace": "/v1/workspace?limit=50", "search": "/v1/search?q=knight&limit=50"}


def hot_figures() -> dict[str, float]:
    """``benchmarks.hot_path``'s figures for 3 rounds a route: median [low, high]."""
    figures: dict[str, float] = {}
    for route in HOT_ROUTES:
        rps = PASSING[f"hot.{route}.requests_per_s"]
        floor = rps * 2.5
        for stat, value in (
            ("requests_per_s", rps),
            ("floor_per_s", floor),
            ("ratio_to_floor", rps / floor),
            ("cpu_ms_per_request", 0.45),
            ("p50_ms", 4.2),
            ("p99_ms", 11.0),
        ):
            put(figures, f"hot.{route}.{stat}", Estimate(value, value * 0.9, value * 1.1, 3))
    return figures


def load_figures(prefix: str, factor: float) -> dict[str, float]:
    figures = {}
    for i, group in enumerate(LOAD_GROUPS):
        base = (5 + 7 * i) * factor
        figures.update(
            {
                f"{prefix}.{group}.count": 1000.0 + 50 * i,
                f"{prefix}.{group}.rps": 20.0 + i,
                f"{prefix}.{group}.p50_ms": base,
                f"{prefix}.{group}.p95_ms": base * 3,
                f"{prefix}.{group}.p99_ms": base * 5,
                f"{prefix}.{group}.error_rate": 0.0,
            }
        )
    return figures


def load_meta(seed: int) -> dict[str, object]:
    """The load runner's shapes: per-second rows and ``[low_ms, high_ms, count]`` buckets."""
    rng = random.Random(seed)
    rows = []
    for t in range(1_700_000_000, 1_700_000_060):
        for group in ("overall", "search"):
            rows.append(
                {
                    "t": t,
                    "group": group,
                    "count": 80 + rng.randint(0, 10),
                    "failures": 0,
                    "p50_ms": 10 + 2 * math.sin(t / 5),
                    "p95_ms": 35 + 5 * math.sin(t / 7),
                    "max_ms": 60 + rng.random() * 20,
                }
            )
    buckets = [[ms, ms * 1.05, rng.randint(1, 400)] for ms in (2 * 1.05**i for i in range(80))]
    return {
        "url_mode": "unified",
        "seconds": 60,
        "timeseries": rows,
        "histograms": {"overall": buckets},
    }


def synthetic_run(targets: Targets, *, overrides: dict[str, float] | None = None) -> RunData:
    figures = dict(PASSING)
    figures.update(load_figures("load", 1.0))
    figures.update(load_figures("load_legacy", 2.5))
    figures.update(hot_figures())
    figures.update(PASSING)
    figures.update(overrides or {})
    run = RunData(scale="plan", targets=targets, figures=figures)
    run.steps = [
        Step("database", "database from the provider chain", StepStatus.OK, 1.2),
        Step("dataset", "migrate and load", StepStatus.OK, 12.5, detail="21,000 assets"),
        Step("benchmarks", "microbenchmarks", StepStatus.OK, 300.0),
        Step("load_unified", "load test, unified", StepStatus.OK, 61.0),
        Step("load_legacy", "load test, legacy", StepStatus.OK, 61.0),
        Step("hot_path", "hot path", StepStatus.OK, 70.0),
    ]
    fingerprint = "abc123"
    run.environment = {
        "machine": {
            "cpu_model": "Synthetic CPU @ 3.0GHz",
            "cores": 2,
            "memory_gib": 23.4,
            "os": "Linux",
            "python": "3.11.2",
        },
        "database": {
            "provider": "local",
            "provider_label": "local server binaries (throwaway cluster)",
            "server_version": "15.20",
            "has_pg_trgm": True,
            "detail": "port 5432",
        },
        "git": {"commit": "0" * 40, "short": "0000000000", "dirty": False, "subject": "test"},
        "fingerprint": fingerprint,
    }
    run.dataset = {
        "scale": "plan",
        "seed": 1,
        "heavy_assets": 10_000,
        "assets": 21_000,
        "rows": {"images": 18_000, "videos": 3_000, "projects": 400, "jobs": 9_000},
        "rows_per_second": 60_000.0,
    }
    run.meta = {
        "bench": {
            "pairs": [
                {"claim": f"queries.{name}", "before_median_s": before, "after_median_s": after}
                for name, before, after in (
                    ("get_user_assets", 0.255, 0.00034),
                    ("session_only", 0.04, 0.0012),
                    ("by_job", 0.03, 0.0012),
                    ("filtered_first_page", 0.1, 0.001),
                )
            ]
        },
        "load": load_meta(1),
        "load_legacy": load_meta(2),
        "hot": {
            "scale": "plan",
            "seconds": 5.0,
            "rounds": 3,
            "connections": 8,
            "routes": HOT_ROUTES,
        },
    }
    run.plans = {
        "scale": "plan",
        "queries": {
            "get_user_assets": {
                "sql": "select ... from images where user_id = $1 order by created_at desc",
                "before": "Limit  (cost=...)\n  ->  Sort\n        ->  Seq Scan on images",
                "after": [
                    {
                        "Plan": {
                            "Node Type": "Limit",
                            "Actual Startup Time": 0.02,
                            "Actual Total Time": 0.3,
                            "Actual Rows": 50,
                            "Actual Loops": 1,
                            "Plans": [
                                {
                                    "Node Type": "Index Scan",
                                    "Index Name": "idx_images_user_created",
                                    "Relation Name": "images",
                                    "Index Cond": "(user_id = $1)",
                                }
                            ],
                        },
                        "Execution Time": 0.34,
                    }
                ],
            }
        },
    }
    run.history = [
        RunRecord(
            time=f"2025-01-0{i}T00:00:00+00:00",
            commit=f"{i}" * 40,
            fingerprint=fingerprint,
            scale="plan",
            verdict="pass",
            figures={k: v * (1 + 0.02 * i) for k, v in PASSING.items()},
        )
        for i in range(1, 4)
    ]
    run.seconds = 480.0
    return run
