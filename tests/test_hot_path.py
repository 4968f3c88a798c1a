"""``benchmarks.hot_path``: its estimates from given rounds, its component file, and one real
round of each route on the tiny dataset (skipped without ``wrk``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import hot_path
from benchmarks.hot_path import Round
from fixtures.database import DatabaseInfo
from reports.uncertainty import Estimate, get
from tests.conftest import prepared_database


def rounds_of(route: str, rps: list[float], floor: list[float]) -> list[Round]:
    return [
        Round(route, i + 1, r, 2.0 + i, 9.0 + i, f, 0.5 + i / 10)
        for i, (r, f) in enumerate(zip(rps, floor, strict=True))
    ]


def test_the_estimates_are_the_median_and_range_of_each_route_s_rounds() -> None:
    measured = rounds_of("workspace", [1200, 1000, 1100], [4000, 5000, 2000]) + rounds_of(
        "search", [600, 700, 800], [900, 1000, 1100]
    )
    found = hot_path.estimates(measured)

    assert list(found) == ["workspace", "search"]
    workspace = found["workspace"]
    assert workspace["requests_per_s"] == Estimate(1100, 1000, 1200, 3)
    assert workspace["floor_per_s"] == Estimate(4000, 2000, 5000, 3)
    # The median of the rounds' own ratios (0.3, 0.2, 0.55), not the ratio of the medians.
    assert workspace["ratio_to_floor"] == Estimate(0.3, 0.2, 0.55, 3)
    assert workspace["cpu_ms_per_request"] == Estimate(0.6, 0.5, 0.7, 3)
    assert workspace["p50_ms"] == Estimate(3.0, 2.0, 4.0, 3)
    assert workspace["p99_ms"] == Estimate(10.0, 9.0, 11.0, 3)
    assert found["search"]["requests_per_s"] == Estimate(700, 600, 800, 3)


def test_with_more_rounds_the_interval_is_the_bootstrap_s_inside_the_range() -> None:
    rps = [1000.0, 1010, 990, 1500, 1005, 1002, 998, 1003, 997]
    found = hot_path.estimates(rounds_of("workspace", rps, [2000.0] * 9))["workspace"]
    e = found["requests_per_s"]
    assert (e.value, e.n) == (1002, 9)
    # Resampled medians: neither the slowest round nor one outlier round bounds it.
    assert min(rps) < e.low <= e.value <= e.high < 1500


def test_a_statistic_wrk_did_not_print_is_left_out() -> None:
    measured = [Round("search", 1, 500.0, None, None, 1000.0, 1.0)]
    found = hot_path.estimates(measured)["search"]
    assert set(found) == {"requests_per_s", "floor_per_s", "ratio_to_floor", "cpu_ms_per_request"}


def test_the_component_file_holds_the_figures_every_round_and_the_estimates() -> None:
    measured = rounds_of("workspace", [1200, 1000, 1100], [4000, 5000, 2000])
    data = hot_path.component(measured, "tiny", 5.0, 3)

    figures = data["figures"]
    assert get(figures, "hot.workspace.requests_per_s") == Estimate(1100, 1000, 1200, 3)
    assert {k.rsplit(".", 1)[1] for k in figures if ":" not in k} == set(hot_path.STATS)
    meta = data["meta"]
    assert (meta["scale"], meta["seconds"], meta["rounds"]) == ("tiny", 5.0, 3)
    assert meta["routes"] == hot_path.ROUTES
    assert [r["round"] for r in meta["measured"]] == [1, 2, 3]
    assert meta["measured"][0]["ratio_to_floor"] == pytest.approx(0.3)
    assert meta["estimates"]["workspace"]["requests_per_s"] == {
        "value": 1100,
        "low": 1000,
        "high": 1200,
        "n": 3,
    }


def test_the_summary_is_one_line_a_route_median_and_interval() -> None:
    found = hot_path.estimates(rounds_of("workspace", [1200, 1000, 1100], [4000, 5000, 2000]))
    line = hot_path.summary_line("workspace", found["workspace"])
    assert "\n" not in line
    assert "1,100 [1,000, 1,200] req/s" in line
    assert "floor 4,000 [2,000, 5,000] pages/s" in line
    assert "ratio 0.30 [0.20, 0.55]" in line
    assert line.endswith("(3 rounds)")


@pytest.fixture(scope="module")
def tiny_dataset(
    database: DatabaseInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    storage = tmp_path_factory.mktemp("hot-path-storage")
    with prepared_database(database.dsn, "tiny", "wsb_hot", storage_dir=storage) as dsn:
        yield dsn, storage


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_one_real_round_of_each_route_gives_every_figure(tiny_dataset: tuple[str, Path]) -> None:
    dsn, storage = tiny_dataset
    # Two connections: what --connections gives wrk and the floor.
    measured = hot_path.measure(dsn, "tiny", 1, rounds=1, storage_dir=storage, connections=2)

    assert [(r.route, r.round) for r in measured] == [("workspace", 1), ("search", 1)]
    for r in measured:
        assert r.requests_per_s > 0, r
        assert r.floor_per_s > 0, r
        assert r.cpu_ms_per_request > 0, r
        assert r.p50_ms is not None, r
        assert r.p99_ms is not None, r
        assert r.p50_ms <= r.p99_ms, r
    found = hot_path.component(measured, "tiny", 1, 1, connections=2)
    assert found["meta"]["connections"] == 2
    figures = found["figures"]
    for route in hot_path.ROUTES:
        for stat in hot_path.STATS:
            assert get(figures, f"hot.{route}.{stat}") is not None, (route, stat)
