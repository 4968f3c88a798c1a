"""Helpers shared by the search tests: the oracle's input, and walking the endpoint's pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from uuid import UUID

from reference.assets import ASSET_COLUMNS, Asset
from reference.db.pool import connect, create_pool
from reference.search.in_memory import filter_assets
from reference.search.query import Page, decode_cursor, parse_query
from reference.search.service import SearchCapabilities, SearchResult, search_assets
from reference.search.trigrams import TrigramFrequencies

USER_ASSETS_SQL = f"select {ASSET_COLUMNS} from assets a where a.user_id = $1"


def oracle_ids(assets: list[Any], **params: str) -> list[str]:
    """The in-memory port's answer: the ids of ``assets`` that match ``params``, in order."""
    return [str(a.id) for a in filter_assets(assets, parse_query(params))]


async def user_assets(dsn: str, user_id: UUID) -> list[Asset]:
    async with connect(dsn, json_codecs=True) as conn:
        return [Asset.from_record(r) for r in await conn.fetch(USER_ASSETS_SQL, user_id)]


async def walk(
    client: Any,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    max_pages: int = 1000,
    *,
    exact: bool = True,
) -> tuple[list[str], int, bool]:
    """Every page of a search: (ids in order, total, whether the last page was reached); every
    page's ``total_is_exact`` must be ``exact``."""
    ids: list[str] = []
    cursor: str | None = None
    total = -1
    for _ in range(max_pages):
        query = dict(params) if cursor is None else {**params, "cursor": cursor}
        resp = await client.get("/v1/search", params=query, headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["total_is_exact"] is exact
        if total >= 0:
            assert body["total"] == total, "the total changed between pages"
        total = body["total"]
        ids.extend(a["id"] for a in body["assets"])
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, total, True
    return ids, total, False


async def search_pages(
    dsn: str,
    caps: SearchCapabilities,
    user: UUID,
    first: Page,
    cap: int,
    trigrams: TrigramFrequencies | None = None,
) -> AsyncIterator[tuple[Page, SearchResult]]:
    """Every page of ``first``'s search by cursor, each with the page asked for, one at a time
    (a test can check what each page sent before the next is asked for)."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        page: Page | None = first
        while page is not None:
            result = await search_assets(pool, caps, user, page, cap, None, trigrams)
            yield page, result
            cursor = result.next_cursor
            query = page.query
            page = None if cursor is None else Page(query, page.limit, decode_cursor(cursor, query))
    finally:
        await pool.close()
