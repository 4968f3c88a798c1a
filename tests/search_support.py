"""Helpers shared by the search tests: the oracle's input, and walking the endpoint's pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from reference.assets import ASSET_COLUMNS, Asset
from reference.db.pool import connect
from reference.search.in_memory import filter_assets
from reference.search.query import parse_query

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
