"""GET /v1/search and the saved search state, against the tiny dataset over real HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from reference.db.pool import SERVER_SETTINGS, Limits, connect, create_pool
from reference.search.in_memory import is_dismissed
from reference.search.query import SearchQuery
from reference.search.service import Statement, fetch_scan, serial_budget
from tests.conftest import auth_headers
from tests.conftest import test_settings as settings_for
from tests.search_support import oracle_ids, user_assets, walk

INSERT_IMAGE = """
insert into images (id, user_id, prompt, status, quality, model_type, storage_path,
                    thumbnail_path, metadata, created_at)
values ($1, $2, $3, 'completed', 'fast', null, 'x.png', 'x.thumb.webp', $4::jsonb, $5)
"""


async def insert_images(dsn: str, user_id: uuid.UUID, prompts: list[str]) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in prompts]
    now = datetime.now(UTC)
    async with connect(dsn) as conn:
        await conn.executemany(
            INSERT_IMAGE,
            [(i, user_id, p, None, now) for i, p in zip(ids, prompts, strict=True)],
        )
    return ids


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "gif"}, "type"),
        ({"quality": "ultra"}, "quality"),
        ({"model": "sdxl"}, "model"),
        ({"status": "done"}, "status"),
        ({"sort": "size"}, "sort"),
        ({"order": "up"}, "order"),
        ({"start": "last tuesday"}, "start"),
        ({"end": "2024-13-01"}, "end"),
        ({"start": "2024-05-02", "end": "2024-05-01"}, "end"),
        ({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:59:59Z"}, "end"),
        ({"end": "9999-12-31"}, "end"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"q": "x" * 201}, "q"),
        ({"q": "fox\x00"}, "q"),
        ({"include_dismissed": "maybe"}, "include_dismissed"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    make_client: Any, seeded_template: Any, params: dict[str, str], field: str
) -> None:
    client = await make_client(seeded_template.dsn)
    resp = await client.get(
        "/v1/search", params=params, headers=auth_headers(seeded_template.heavy_user)
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] == field, body


async def test_repeated_parameter_is_400(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    resp = await client.get(
        "/v1/search?type=image&type=video", headers=auth_headers(seeded_template.heavy_user)
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "type"


async def test_requires_a_token(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    assert (await client.get("/v1/search")).status == 401


async def test_dismissed_left_out_unless_asked(make_client: Any, seeded_template: Any) -> None:
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    dismissed = {str(a.id) for a in assets if is_dismissed(a)}
    assert dismissed, "the dataset should have dismissed assets"
    assert any(a.metadata.get("workspace_dismissed") is None for a in assets)
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(user)

    ids, total, done = await walk(client, headers, {"limit": "200"})
    assert done
    assert total == len(assets) - len(dismissed) == len(ids)
    assert not dismissed & set(ids)

    ids, total, done = await walk(client, headers, {"limit": "200", "include_dismissed": "true"})
    assert done
    assert total == len(assets)
    assert dismissed <= set(ids)


async def parallel_scans(client: Any) -> float:
    """``search_parallel_scans_total``, summed over its labels, from ``/metrics``."""
    text = await (await client.get("/metrics")).text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("search_parallel_scans_total{")
    )


SHORT_QUERIES = ["a", "X", "8k", "f/", " l", "zq"]


@pytest.mark.parametrize("serial_ms", [None, 0], ids=["serial-first", "on-workers"])
@pytest.mark.parametrize("q", SHORT_QUERIES)
async def test_short_queries_match_the_oracle(
    make_client: Any, seeded_template: Any, q: str, serial_ms: int | None
) -> None:
    """The same answer whether the scan runs on one process (the default budget, which the tiny
    dataset never outruns) or again with parallel workers (a budget of 0)."""
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    overrides = {} if serial_ms is None else {"search_serial_scan_ms": serial_ms}
    client = await make_client(seeded_template.dsn, **overrides)
    scans_before = await parallel_scans(client)
    resp = await client.get(
        "/v1/search", params={"q": q, "limit": "200"}, headers=auth_headers(user)
    )
    body = await resp.json()
    assert body["text_search"] == "short"
    expected = oracle_ids(assets, q=q)
    assert body["total"] == len(expected)
    assert [a["id"] for a in body["assets"]] == expected[:200]
    assert await parallel_scans(client) - scans_before == (0 if serial_ms is None else 1)


async def test_a_scan_past_its_budget_runs_again_on_workers(seeded_template: Any) -> None:
    """The budget is the server's: a statement still running when it ends is cancelled and run
    again, in a transaction that lets PostgreSQL plan parallel workers; one that ends within it
    is answered at once, with the server's own costs."""
    sleep = Statement(
        "page",
        "select pg_sleep($1), current_setting('parallel_setup_cost') as setup,"
        " current_setting('statement_timeout') as timeout",
        [0.3],
    )
    settings = (
        "select current_setting('parallel_setup_cost') as setup,"
        " current_setting('statement_timeout') as timeout"
    )
    # The session's own values, whatever the server's configuration says.
    limits = Limits(60_000, base={**SERVER_SETTINGS, "parallel_setup_cost": "1000"})
    pool = await create_pool(seeded_template.dsn, min_size=1, max_size=1, limits=limits)
    try:
        default = await pool.fetchrow(settings)
        assert (default["setup"], default["timeout"]) == ("1000", "1min")
        rows, parallel = await fetch_scan(pool, sleep, serial_ms=50)
        assert parallel
        assert rows[0]["setup"] == "0"
        assert rows[0]["timeout"] == default["timeout"]  # the budget was the first run's alone
        rows, parallel = await fetch_scan(pool, sleep, serial_ms=5_000)
        assert not parallel
        assert rows[0]["setup"] == default["setup"]
        assert rows[0]["timeout"] == "5s"
        # Nothing stays set on the connection after either run.
        assert await pool.fetchrow(settings) == default
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("serial_ms", "timeout_ms", "budget"),
    [(25, 10_000, 25), (0, 10_000, 0), (25, 25, None), (500, 100, None)],
)
def test_the_serial_budget_never_raises_the_statement_bound(
    serial_ms: int, timeout_ms: int, budget: int | None
) -> None:
    settings = settings_for(
        "postgresql://unused", search_serial_scan_ms=serial_ms, db_statement_timeout_ms=timeout_ms
    )
    assert serial_budget(settings) == budget


async def test_a_scan_without_a_budget_runs_once_under_the_pools_bound(
    seeded_template: Any,
) -> None:
    """With no budget (the statement bound is the shorter), the scan runs once and the bound
    ends it: a 503 for the caller, not a second run."""
    sleep = Statement("page", "select pg_sleep($1)", [0.5])
    pool = await create_pool(seeded_template.dsn, min_size=1, max_size=1, limits=Limits(100))
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await fetch_scan(pool, sleep, serial_ms=None)
        rows, parallel = await fetch_scan(pool, Statement("page", "select 1 as x", []), None)
        assert (rows[0]["x"], parallel) == (1, False)
    finally:
        await pool.close()


async def test_like_wildcards_are_literal(make_client: Any, seeded_dsn: str) -> None:
    user = uuid.uuid4()
    prompts = [
        "sale 100% off today",
        "sale 1000 off today",
        "snake_case cat",
        "snakeXcase cat",
        "back\\slash path",
        "backslash path",
    ]
    ids = await insert_images(seeded_dsn, user, prompts)
    by_prompt = dict(zip(prompts, map(str, ids), strict=True))
    client = await make_client(seeded_dsn)
    headers = auth_headers(user)
    for q, expected in [
        ("100%", {"sale 100% off today"}),
        ("%", {"sale 100% off today"}),
        ("snake_case", {"snake_case cat"}),
        ("_", {"snake_case cat"}),
        ("back\\s", {"back\\slash path"}),
        ("\\", {"back\\slash path"}),
        ("SALE", {"sale 100% off today", "sale 1000 off today"}),
    ]:
        got, total, _ = await walk(client, headers, {"q": q})
        assert set(got) == {by_prompt[p] for p in expected}, q
        assert total == len(expected)


async def test_another_users_assets_never_appear(make_client: Any, seeded_dsn: str) -> None:
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    secret = "zanzibar quokka in a teacup"
    await insert_images(seeded_dsn, owner, [secret])
    client = await make_client(seeded_dsn)
    for params in ({"q": "quokka"}, {"q": "zq"}, {"include_dismissed": "true"}, {"sort": "prompt"}):
        _, total, _ = await walk(client, auth_headers(stranger), params)
        assert total == 0, params
    ids, total, _ = await walk(client, auth_headers(owner), {"q": "QUOKKA"})
    assert total == 1
    assert len(ids) == 1


async def test_results_belong_to_the_caller(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    for user in seeded_template.users[:4]:
        own = {str(a.id) for a in await user_assets(seeded_template.dsn, user)}
        ids, _, _ = await walk(
            client, auth_headers(user), {"include_dismissed": "true", "limit": "200"}
        )
        assert set(ids) <= own
        assert len(ids) == len(own)


async def test_date_bounds_are_inclusive(make_client: Any, seeded_template: Any) -> None:
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    visible = [a for a in assets if not is_dismissed(a)]
    pivot = sorted(visible, key=lambda a: a.created_at)[len(visible) // 2]
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(user)
    moment = pivot.created_at.isoformat()
    ids, _, _ = await walk(client, headers, {"start": moment, "end": moment})
    assert str(pivot.id) in ids
    day = pivot.created_at.date().isoformat()
    ids, total, _ = await walk(client, headers, {"start": day, "end": day, "limit": "200"})
    expected = [a for a in visible if a.created_at.date() == pivot.created_at.date()]
    assert total == len(expected)
    assert set(ids) == {str(a.id) for a in expected}
    after = (pivot.created_at + timedelta(microseconds=1)).isoformat()
    ids, _, _ = await walk(client, headers, {"start": after, "limit": "200"})
    assert str(pivot.id) not in ids


async def test_cursor_of_another_search_is_rejected(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(seeded_template.heavy_user)
    first = await (await client.get("/v1/search?limit=5", headers=headers)).json()
    assert first["next_cursor"]
    resp = await client.get(
        "/v1/search",
        params={"limit": "5", "sort": "prompt", "cursor": first["next_cursor"]},
        headers=headers,
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "cursor"


async def test_capabilities_report_the_trigram_index(
    make_client: Any, seeded_template: Any
) -> None:
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(seeded_template.heavy_user)
    caps = await (await client.get("/v1/search/capabilities", headers=headers)).json()
    assert caps["text_index"] is True
    assert caps["limitation"] is None
    body = await (await client.get("/v1/search?q=portrait", headers=headers)).json()
    assert body["text_search"] == "trigram"


async def test_without_pg_trgm_search_is_still_exact_and_says_so(
    make_client: Any, seeded_dsn: str, seeded_template: Any
) -> None:
    async with connect(seeded_dsn) as conn:
        await conn.execute("drop extension if exists btree_gin cascade")
        await conn.execute("drop extension if exists pg_trgm cascade")
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_dsn, user)
    client = await make_client(seeded_dsn)
    headers = auth_headers(user)
    caps = await (await client.get("/v1/search/capabilities", headers=headers)).json()
    assert caps["text_index"] is False
    assert "pg_trgm" in caps["limitation"]
    on_workers = await make_client(seeded_dsn, search_serial_scan_ms=0)
    scans_before = await parallel_scans(on_workers)
    for q in ("portrait", "light", "Of"):
        resp = await client.get("/v1/search", params={"q": q, "limit": "200"}, headers=headers)
        body = await resp.json()
        assert body["text_index"] is False
        assert body["text_search"] == ("scan" if len(q) >= 3 else "short")
        params = {"q": q, "limit": "200"}
        again = await (await on_workers.get("/v1/search", params=params, headers=headers)).json()
        assert again["total"] == body["total"]
        assert [a["id"] for a in again["assets"]] == [a["id"] for a in body["assets"]]
        expected = oracle_ids(assets, q=q)
        assert body["total"] == len(expected)
        assert [a["id"] for a in body["assets"]] == expected[:200]
    assert await parallel_scans(on_workers) - scans_before == 3


STATE = {
    "query": "red fox",
    "filters": {
        "type": "image",
        "quality": "high",
        "model": "none",
        "status": "completed",
        "start": "2024-01-01",
        "end": "2024-06-30T23:59:59Z",
        "include_dismissed": True,
    },
    "sort": {"by": "prompt", "order": "asc"},
}


async def test_state_survives_a_restart(make_client: Any, seeded_dsn: str) -> None:
    user = uuid.uuid4()
    first = await make_client(seeded_dsn)
    initial = await (await first.get("/v1/search/state", headers=auth_headers(user))).json()
    assert initial["updated_at"] is None
    assert initial["state"] == SearchQuery().state()
    resp = await first.put("/v1/search/state", json=STATE, headers=auth_headers(user))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == STATE
    await first.close()

    second = await make_client(seeded_dsn)
    body = await (await second.get("/v1/search/state", headers=auth_headers(user))).json()
    assert body["state"] == STATE
    assert body["updated_at"] is not None
    other = await (await second.get("/v1/search/state", headers=auth_headers(uuid.uuid4()))).json()
    assert other["updated_at"] is None


async def test_partial_state_gets_defaults(make_client: Any, seeded_dsn: str) -> None:
    client = await make_client(seeded_dsn)
    resp = await client.put(
        "/v1/search/state", json={"query": "owl"}, headers=auth_headers(uuid.uuid4())
    )
    assert resp.status == 200
    state = (await resp.json())["state"]
    assert state == {**SearchQuery(q="owl").state()}
    assert state["sort"] == {"by": "date", "order": "desc"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filters": {"model": "sdxl"}}, "filters.model"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
        ({"filters": {"start": "2024-02-01", "end": "2024-01-01"}}, "filters.end"),
        ({"filters": {"include_dismissed": "yes"}}, "filters.include_dismissed"),
        ({"filters": {"type": 3}}, "filters.type"),
        ({"sort": {"by": "size"}}, "sort.by"),
        ({"sort": {"order": "sideways"}}, "sort.order"),
        ({"sort": "date"}, "sort"),
        ({"query": "x" * 500}, "query"),
        ({"query": 7}, "query"),
        ({"page": 2}, "page"),
        ([1, 2], "body"),
    ],
)
async def test_bad_state_is_400_naming_the_field(
    make_client: Any, seeded_dsn: str, body: Any, field: str
) -> None:
    client = await make_client(seeded_dsn)
    resp = await client.put("/v1/search/state", json=body, headers=auth_headers(uuid.uuid4()))
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_state_body_must_be_json(make_client: Any, seeded_dsn: str) -> None:
    client = await make_client(seeded_dsn)
    resp = await client.put(
        "/v1/search/state", data=b"{not json", headers=auth_headers(uuid.uuid4())
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "body"


async def test_every_search_parameter_is_documented(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    doc = await (await client.get("/openapi.json")).json()
    names = {p["name"] for p in doc["paths"]["/v1/search"]["get"]["parameters"]}
    assert names == {
        "q", "type", "quality", "model", "status", "start", "end", "sort", "order",
        "include_dismissed", "cursor", "limit",
    }  # fmt: skip
    assert "put" in doc["paths"]["/v1/search/state"]
    assert "get" in doc["paths"]["/v1/search/capabilities"]


@pytest.mark.parametrize(
    "params",
    [
        {"q": "the"},
        {"q": "a"},
        {"q": "the", "sort": "prompt", "order": "asc"},
        {},
        {"quality": "high"},
        {"type": "image", "sort": "model", "order": "asc"},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "everything",
)
async def test_totals_are_exact_up_to_the_cap_and_at_least_the_cap_beyond(
    make_client: Any, seeded_template: Any, params: dict[str, str]
) -> None:
    """Text and filters alike: at the cap the total is exact, one match more and it is the cap
    with ``total_is_exact: false``; the cursor still walks every match, in order."""
    user = seeded_template.heavy_user
    expected = oracle_ids(await user_assets(seeded_template.dsn, user), **params)
    assert len(expected) > 10
    headers = auth_headers(user)
    for cap, exact in ((len(expected), True), (len(expected) - 1, False), (5, False)):
        client = await make_client(seeded_template.dsn, search_count_cap=cap)
        ids, total, done = await walk(client, headers, {**params, "limit": "37"}, exact=exact)
        assert done
        assert ids == expected
        assert total == (len(expected) if exact else cap)


async def test_no_match_is_an_exact_zero_and_a_small_page_still_says_at_least(
    make_client: Any, seeded_template: Any
) -> None:
    client = await make_client(seeded_template.dsn, search_count_cap=5)
    headers = auth_headers(seeded_template.heavy_user)
    body = await (await client.get("/v1/search?q=zzzz-nowhere", headers=headers)).json()
    assert (body["total"], body["total_is_exact"]) == (0, True)
    first = await (await client.get("/v1/search?q=the&limit=3", headers=headers)).json()
    assert (first["total"], first["total_is_exact"]) == (5, False)


async def test_a_cursor_past_every_match_answers_an_empty_page_and_the_total(
    make_client: Any, seeded_dsn: str
) -> None:
    """The text page counts its matches on the rows it answers; when the matches past a cursor
    are gone (deleted after the first page), the page is empty and the total still exact."""
    user = uuid.uuid4()
    ids = await insert_images(seeded_dsn, user, [f"zebra tail {n}" for n in range(5)])
    client = await make_client(seeded_dsn)
    headers = auth_headers(user)
    first = await (await client.get("/v1/search?q=zebra&limit=3", headers=headers)).json()
    assert (first["total"], first["total_is_exact"], len(first["assets"])) == (5, True, 3)
    shown = {a["id"] for a in first["assets"]}
    async with connect(seeded_dsn) as conn:
        await conn.execute(
            "delete from images where id = any($1::uuid[])", [i for i in ids if str(i) not in shown]
        )
    resp = await client.get(
        "/v1/search", params={"q": "zebra", "limit": "3", "cursor": first["next_cursor"]},
        headers=headers,
    )  # fmt: skip
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["assets"], body["next_cursor"]) == ([], None)
    assert (body["total"], body["total_is_exact"]) == (3, True)


async def test_results_carry_signed_thumbnail_urls(make_client: Any, seeded_template: Any) -> None:
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(seeded_template.heavy_user)
    body = await (await client.get("/v1/search?q=portrait&limit=5", headers=headers)).json()
    assert body["assets"]
    for item in body["assets"]:
        url = item["thumbnail_url"]
        assert "/storage/v1/object/sign/" in url
        assert "token=" in url
