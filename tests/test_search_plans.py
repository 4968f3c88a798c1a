"""Query plans of the common searches for the heavy user: indexes, never a sequential scan.

The ``small`` dataset (2,000 assets for the heavy user, 4,500 in all) is loaded the way
``make bench`` does it (data first, indexes after), vacuumed and analysed, and every search is
explained with the exact statements and arguments the endpoint sends, under the pool's settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from fixtures.database import DatabaseInfo, create_database, drop_database, run_async
from fixtures.generate import heavy_user_id
from fixtures.prepare import prepare_dataset
from fixtures.spec import spec_for
from reference.db.pool import SERVER_SETTINGS, connect
from reference.search.query import parse_query
from reference.search.service import detect_capabilities, search_args
from reference.search.sql import COUNT_SQL, PAGE_SQL

ASSET_TABLES = {"images", "videos"}
COMMON_SEARCHES: list[dict[str, str]] = [
    {},
    {"q": "portrait"},
    {"q": "red fox"},
    {"q": "golden hour"},
    {"q": "the"},
    {"q": "Cinematic", "type": "image"},
    {"q": "8k"},
    {"q": "a"},
    {"sort": "prompt"},
    {"sort": "prompt", "order": "asc"},
    {"sort": "quality"},
    {"sort": "model", "order": "asc"},
    {"q": "dragon", "sort": "prompt", "order": "asc"},
    {"quality": "high"},
    {"model": "SDXL"},
    {"model": "none", "sort": "model"},
    {"status": "failed"},
    {"type": "video"},
    {"start": "2020-01-01", "end": "2099-12-31"},
    {"include_dismissed": "true"},
    {"q": "cinematic", "type": "image", "quality": "high", "status": "completed"},
]


@pytest.fixture(scope="module")
def small_dataset(database: DatabaseInfo) -> Iterator[tuple[str, Any]]:
    spec = spec_for("small")

    async def prepare() -> str:
        dsn = await create_database(database.dsn, prefix="wsb_plans")
        await prepare_dataset(dsn, spec, progress=False)
        async with connect(dsn) as conn:
            await conn.execute("vacuum analyze")
        return dsn

    dsn = run_async(prepare())
    try:
        yield dsn, spec
    finally:
        run_async(drop_database(database.dsn, dsn))


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from plan_nodes(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from plan_nodes(value)


async def explain_search(dsn: str, spec: Any, params: dict[str, str]) -> dict[str, Any]:
    async with connect(dsn, server_settings=SERVER_SETTINGS, json_codecs=True) as conn:
        caps = await detect_capabilities(conn)
        query = parse_query(params)
        args = search_args(heavy_user_id(spec), query, caps.mode_for(query.q))
        plans = {}
        for name, sql, extra in (
            ("page", PAGE_SQL[query.sort, query.order], [None, None, 51]),
            ("count", COUNT_SQL, []),
        ):
            raw = await conn.fetchval("explain (format json) " + sql, *args, *extra)
            plans[name] = orjson.loads(raw) if isinstance(raw, str) else raw
        return plans


@pytest.mark.parametrize("params", COMMON_SEARCHES, ids=lambda p: orjson.dumps(p).decode())
def test_common_searches_use_indexes(
    small_dataset: tuple[str, Any], params: dict[str, str]
) -> None:
    dsn, spec = small_dataset
    plans = asyncio.run(explain_search(dsn, spec, params))
    for name, plan in plans.items():
        nodes = list(plan_nodes(plan))
        seq = [n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"]
        assert not set(seq) & ASSET_TABLES, f"{name} plan scans {seq}: {plan}"
        used = {n.get("Index Name") for n in nodes} - {None}
        assert used, f"{name} plan uses no index: {plan}"


@pytest.mark.parametrize("q", ["portrait", "golden hour", "dragon"])
def test_selective_text_search_uses_the_trigram_index(
    small_dataset: tuple[str, Any], q: str
) -> None:
    dsn, spec = small_dataset
    plans = asyncio.run(explain_search(dsn, spec, {"q": q}))
    for name, plan in plans.items():
        used = {n.get("Index Name") for n in plan_nodes(plan)}
        assert {"idx_images_user_prompt_trgm", "idx_videos_user_prompt_trgm"} <= used, name


@pytest.mark.parametrize(
    ("sort", "index"),
    [("prompt", "prompt_c"), ("quality", "quality_c"), ("model", "model_c")],
)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_every_sort_is_an_ordered_index_scan(
    small_dataset: tuple[str, Any], sort: str, order: str, index: str
) -> None:
    dsn, spec = small_dataset
    plans = asyncio.run(explain_search(dsn, spec, {"sort": sort, "order": order}))
    nodes = list(plan_nodes(plans["page"]))
    assert not any(n["Node Type"] == "Sort" for n in nodes), plans["page"]
    used = {n.get("Index Name") for n in nodes}
    assert {f"idx_images_user_{index}", f"idx_videos_user_{index}"} <= used
