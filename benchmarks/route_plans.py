"""The query plans behind a route: ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements it sends.

The statements and arguments come from the service's own builders (``page_statement`` of the
workspace, ``search_statements`` of search), parsed from the route's query string the way the
handlers parse it, and run on a connection with the pool's server settings: the plan is the one
the service gets. Routes that answer from memory (organize) have no plan here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

import asyncpg

from reference.db.pool import GENERIC_PLAN_SETTINGS, SERVER_SETTINGS, connect
from reference.search.query import parse_page
from reference.search.service import search_setup, search_statements
from reference.search.trigrams import TrigramFrequencies
from reference.settings import Settings
from reference.workspace.views import WorkspaceQuery, page_statement

EXPLAIN: Final = "explain (analyze, buffers) "


#: Routes whose statements the service sends on its generic-plan pool.
GENERIC_ROUTES: Final = frozenset({"/v1/workspace"})


def route_statements(
    path: str,
    user: UUID,
    settings: Settings,
    caps: Any,
    trigrams: TrigramFrequencies | None = None,
) -> list[tuple[str, str, list[Any]]] | None:
    """(name, sql, args) of each statement ``path`` sends for ``user`` (search: with the
    trigrams the service would look up from ``trigrams``); None: no SQL plan."""
    parts = urlsplit(path)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.path in GENERIC_ROUTES:
        sql, args = page_statement(user, WorkspaceQuery.parse(params, settings))
        return [("page", sql, list(args))]
    if parts.path == "/v1/search":
        page = parse_page(params, set(), settings)
        found = search_statements(caps, user, page, settings.search_count_cap, trigrams)
        return [(s.name, s.sql, s.args) for s in found]
    return None


async def _explain(conn: asyncpg.Connection, sql: str, args: list[Any]) -> str:
    rows = await conn.fetch(EXPLAIN + sql, *args)
    return "\n".join(r[0] for r in rows)


async def explain_generic(
    conn: asyncpg.Connection, sql: str, args: list[Any], explain: str = EXPLAIN
) -> str:
    """The plan a generic-plan connection runs: EXPLAIN of the statement's bound arguments
    plans for their values, so the statement is prepared and its EXECUTE explained (PostgreSQL
    15 has no ``EXPLAIN (GENERIC_PLAN)``; EXECUTE takes its arguments as literals)."""
    literals = [await conn.fetchval("select quote_literal($1::text)", str(a)) for a in args]
    await conn.execute(f"prepare wsb_explained as {sql}")
    try:
        rows = await conn.fetch(f"{explain}execute wsb_explained({', '.join(literals)})")
    finally:
        await conn.execute("deallocate wsb_explained")
    return "\n".join(str(r[0]) for r in rows)


async def route_plans(
    dsn: str, routes: Mapping[str, str], user: UUID, settings: Settings
) -> dict[str, str]:
    """``{route: plan text}`` for every route that sends SQL; a route of several statements
    has each plan under a ``-- name`` line. Each statement runs once first, so the plan shows
    warm caches as the measured requests see them."""
    plans: dict[str, str] = {}
    async with (
        connect(dsn, server_settings=SERVER_SETTINGS, json_codecs=True) as conn,
        connect(dsn, server_settings=GENERIC_PLAN_SETTINGS, json_codecs=True) as generic,
    ):
        caps, trigrams = await search_setup(conn)
        for route, path in routes.items():
            statements = route_statements(path, user, settings, caps, trigrams)
            if statements is None:
                continue
            on_generic = urlsplit(path).path in GENERIC_ROUTES
            texts = []
            for name, sql, args in statements:
                if on_generic:
                    await generic.fetch(sql, *args)
                    plan = await explain_generic(generic, sql, args)
                else:
                    await conn.fetch(sql, *args)
                    plan = await _explain(conn, sql, args)
                texts.append(f"-- {name}\n{plan}")
            plans[route] = "\n\n".join(texts)
    return plans
