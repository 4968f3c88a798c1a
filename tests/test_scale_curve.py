"""The scale curve's figures: keys as the report reads them, flatness over paged routes only."""

from __future__ import annotations

import uuid

from benchmarks.route_plans import route_statements
from benchmarks.scale_curve import PAGED, ROUTES, RouteLatency, figures_of, flatness
from reference.search.query import SortKey, SortOrder, parse_page
from reference.search.service import SearchCapabilities, search_statements
from reference.search.sql import COUNT_CAPPED_SQL, PAGE_SQL, TEXT_PAGE_SQL
from reference.workspace.sql import PAGE_ALL
from reports import uncertainty
from reports.uncertainty import Estimate
from tests.conftest import SETTINGS


def latency(route: str, scale: str, p95: float) -> RouteLatency:
    return RouteLatency(
        route, scale, Estimate(p95 / 2, p95 / 3, p95, 9), Estimate(p95, p95 * 0.9, p95 * 1.2, 9)
    )


def test_flatness_is_the_worst_paged_ratio_and_ignores_other_routes() -> None:
    results = [
        latency("workspace_first", "plan", 4.0),
        latency("workspace_first", "100k", 5.0),
        latency("search_text_high", "plan", 5.0),
        latency("search_text_high", "100k", 10.0),
        latency("duplicates_warm", "plan", 10.0),
        latency("duplicates_warm", "100k", 100.0),
    ]
    assert "duplicates_warm" not in PAGED
    assert "search_text_high" in PAGED
    worst = flatness(results, ["plan", "100k"])
    assert worst is not None
    assert worst.value == 2.0
    assert worst.low == 10.0 * 0.9 / (5.0 * 1.2)
    assert worst.high == 10.0 * 1.2 / (5.0 * 0.9)
    assert flatness(results, ["plan"]) is None


def test_figures_carry_intervals_per_route_and_scale() -> None:
    results = [latency(r, s, 3.0) for r in ROUTES for s in ("plan", "100k")]
    figures = figures_of(results, ["plan", "100k"])
    p95 = uncertainty.get(figures, "curve.search_text_sort_prompt.100k.p95_ms")
    assert p95 == Estimate(3.0, 2.7, 3.5999999999999996, 9)
    assert figures["curve.flatness_p95"] == 1.0
    assert {"curve.flatness_p95:low", "curve.flatness_p95:high", "curve.flatness_p95:n"} <= set(
        figures
    )


def test_a_failing_route_is_reported_and_a_failing_paged_route_voids_flatness() -> None:
    ok = [latency("workspace_first", s, 3.0) for s in ("plan", "1m")]
    failed = RouteLatency("duplicates_warm", "1m", None, None, {503: 4})
    figures = figures_of([*ok, failed], ["plan", "1m"])
    assert figures["curve.duplicates_warm.1m.failed"] == 4.0
    assert "curve.duplicates_warm.1m.p95_ms" not in figures
    assert figures["curve.flatness_p95"] == 1.0
    paged_failure = RouteLatency("workspace_first", "1m", None, None, {503: 1})
    assert flatness([ok[0], paged_failure], ["plan", "1m"]) is None


def test_route_plans_explain_the_statements_the_service_sends() -> None:
    caps = SearchCapabilities(pg_trgm=True, btree_gin=True, trigram_index="user_prompt")
    user = uuid.uuid4()
    cap = SETTINGS.search_count_cap
    text = route_statements("/v1/search?q=knight&quality=high&limit=50", user, SETTINGS, caps)
    page = parse_page({"q": "knight", "quality": "high", "limit": "50"}, set(), SETTINGS)
    assert text == [(s.name, s.sql, s.args) for s in search_statements(caps, user, page, cap)]
    assert [(name, sql) for name, sql, _ in text] == [
        ("page", TEXT_PAGE_SQL[SortKey.DATE, SortOrder.DESC, True]),
        ("walk", PAGE_SQL[SortKey.DATE, SortOrder.DESC]),
    ]
    assert text[0][2][1:3] == [["%knight%"], "knight"]
    assert text[0][2][-1] == cap + 1  # by date: the walk costs less than reading all
    assert text[1][2][1:3] == [None, "knight"]
    filters = route_statements(ROUTES["filters_only"], user, SETTINGS, caps)
    assert filters is not None
    assert [(name, sql) for name, sql, _ in filters] == [
        ("page", PAGE_SQL[SortKey.MODEL, SortOrder.DESC]),
        ("count", COUNT_CAPPED_SQL[True]),
    ]
    assert filters[1][2][-1] == cap + 1
    assert route_statements("/v1/workspace?limit=50", user, SETTINGS, caps) == [
        ("page", PAGE_ALL, [user, 51])
    ]
    assert route_statements(ROUTES["duplicates_warm"], user, SETTINGS, caps) is None


DISMISSED = "select count(*) from assets where (metadata->>'workspace_dismissed') = 'true'"


async def test_the_batch_routes_are_timed_to_their_end_and_each_round_undone(
    aiohttp_server, seeded_template, seeded_dsn, tmp_path
) -> None:
    """Every round of a dismiss starts from the same workspace: the curve undoes it."""
    from benchmarks.scale_curve import MUTATIONS, measure_routes
    from fixtures.storage_files import write_storage_objects_in_child
    from reference.app import create_app
    from reference.db.pool import connect
    from tests.conftest import auth_headers
    from tests.conftest import test_settings as settings_for

    await write_storage_objects_in_child(seeded_dsn, tmp_path, progress=False)
    server = await aiohttp_server(create_app(settings_for(seeded_dsn, storage_dir=tmp_path)))
    user = seeded_template.heavy_user
    async with connect(seeded_dsn) as conn:
        before = await conn.fetchval(DISMISSED)
    samples = await measure_routes(
        str(server.make_url("")),
        {"workspace_first": ROUTES["workspace_first"]},
        auth_headers(user),
        3,
        1,
        (seeded_dsn, user, 3),
        2,
    )
    assert set(samples) == {"workspace_first", *MUTATIONS}
    for route, (timings, failures) in samples.items():
        assert failures == {}, route
        assert len(timings) == (3 if route == "workspace_first" else 2), route
    async with connect(seeded_dsn) as conn:
        assert await conn.fetchval(DISMISSED) == before


async def test_a_cold_route_is_one_rebuild_a_round_with_another_clients_probe_beside(
    aiohttp_server, seeded_template, seeded_dsn, tmp_path
) -> None:
    """Each round of ``duplicates_cold`` bumps the user's organize version and times the
    rebuilt index's answer; ``/healthz`` is probed from another client for as long."""
    from benchmarks.scale_curve import PROBE, measure_routes
    from fixtures.storage_files import write_storage_objects_in_child
    from reference.app import create_app
    from reference.organize.index import ORGANIZE
    from tests.conftest import auth_headers
    from tests.conftest import test_settings as settings_for

    await write_storage_objects_in_child(seeded_dsn, tmp_path, progress=False)
    app = create_app(settings_for(seeded_dsn, storage_dir=tmp_path))
    server = await aiohttp_server(app)
    user = seeded_template.heavy_user
    samples = await measure_routes(
        str(server.make_url("")),
        {"duplicates_cold": ROUTES["duplicates_cold"]},
        auth_headers(user),
        3,
        1,
        (seeded_dsn, user, 3),
        1,
    )
    rebuilt, failures = samples["duplicates_cold"]
    assert (len(rebuilt), failures) == (3, {})
    assert app[ORGANIZE].builds == 3
    probed, probe_failures = samples[PROBE]
    assert probed
    assert probe_failures == {}
