"""Search over the caller's assets: the plan's ``useWorkspaceSearch``, in PostgreSQL.

Semantics (the in-memory port, :mod:`reference.search.in_memory`, implements the same ones and is
the test oracle):

* ``q``: case-insensitive substring of the prompt (the plan's ``toLowerCase().includes``), with
  ``%``, ``_`` and ``\\`` literal: ``strpos(lower(prompt), lower(q)) > 0``. A query with a run of
  three letters or digits asks the trigram index for candidates (through its rarest trigrams,
  :mod:`reference.search.trigrams`); a shorter one has no trigram to look up, so the test runs
  over the user's rows.
* ``model=none`` selects the plain model (``model_type`` NULL).
* ``start`` and ``end`` are inclusive; a date without a time is a whole UTC day (``end=2024-05-01``
  includes all of May 1st); a datetime without an offset is UTC.
* Sorting compares text in code-point order (``COLLATE "C"``), not the browser's locale-dependent
  ``localeCompare``; a NULL model sorts as ``''`` (the plan's ``modelType || ''``). Ties are broken
  by ``id`` in the same direction, so the order is total and keyset cursors are exact.
* Dismissed (``metadata->>'workspace_dismissed' = 'true'``; a missing key is not dismissed) assets
  are left out unless ``include_dismissed=true``.
* ``total`` is exact up to ``search_count_cap`` (``SEARCH_COUNT_CAP``, 1,000) matches; beyond,
  ``total`` is the cap and ``total_is_exact`` is false ("at least 1,000"). The cap holds for
  filters as for text: counting stops at cap + 1 rows (a text search sorted by other than date
  reads up to :data:`READ_ALL_FACTOR` times the cap through the trigram index, for its page),
  so a total costs the same at 10,000 assets as at 1,000,000. Cursors still walk every match.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import asyncpg

from reference.assets import Asset
from reference.search.query import (
    MAX_QUERY_CHARS,
    PLAIN_TRIGRAM_INDEXES,
    TRIGRAM_INDEXES,
    TRIGRAM_RUN,
    Page,
    SearchQuery,
    SortKey,
    TextMode,
    encode_cursor,
)
from reference.search.sql import (
    CAPABILITIES_SQL,
    COUNT_CAPPED_SQL,
    PAGE_SQL,
    PARALLEL_SCAN_SQL,
    TEXT_PAGE_SQL,
)
from reference.search.trigrams import TrigramFrequencies, load_trigram_frequencies
from reference.settings import Settings

#: A text search through the trigram index sorted by prompt, quality or model reads up to this
#: many times the count cap of its matches (plus one), and when that is all of them its page is
#: the top of those, in the same statement. The index has found every candidate before the first
#: row is read, so each match more is one row read; the alternative, the walk of a sort index
#: after the count, reads about 51 / (share of the history that matches) rows, and in the order
#: of prompts, qualities or models those lie all over the table. At 100,000 assets, ``knight``
#: (1,312 matches) by prompt read 1,001 rows and then walked about 3,900 (7.9 ms; 5.1 ms reading
#: all 1,312). By date the walk follows the table's own order (rows are added as they are made)
#: and costs less than the rows past the cap: the cap + 1 is read, as before (at 1,000,000
#: assets, ``knight`` with ``type=video``, 2,063 matches: 5.5 ms with the walk, 7.2 ms reading
#: them all). Searches the trigram sample expects past twice the cap count and walk at once
#: (:meth:`TrigramFrequencies.past_cap`); one it misjudges, with more matches than this bound,
#: reads up to the bound for nothing before its walk.
READ_ALL_FACTOR: Final = 3


def like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class SearchCapabilities:
    pg_trgm: bool
    btree_gin: bool
    trigram_index: str | None  # "user_prompt" (btree_gin composite), "prompt", or None

    @property
    def text_index(self) -> bool:
        return self.trigram_index is not None

    def mode_for(self, q: str) -> TextMode | None:
        if not q:
            return None
        if TRIGRAM_RUN.search(q) is None:
            return TextMode.SHORT
        return TextMode.TRIGRAM if self.text_index else TextMode.SCAN

    def to_json(self) -> dict[str, Any]:
        limitation = None
        if not self.text_index:
            limitation = (
                "pg_trgm is not available on this server (the pgserver provider has no contrib): "
                "prompt queries scan the user's rows with ILIKE. Results are exact, but slower."
            )
        return {
            "pg_trgm": self.pg_trgm,
            "btree_gin": self.btree_gin,
            "trigram_index": self.trigram_index,
            "text_index": self.text_index,
            "short_query_chars": 3,
            "max_query_chars": MAX_QUERY_CHARS,
            "collation": "C (code-point order)",
            "limitation": limitation,
        }


async def detect_capabilities(conn: asyncpg.Connection) -> SearchCapabilities:
    row = await conn.fetchrow(CAPABILITIES_SQL, list(TRIGRAM_INDEXES), list(PLAIN_TRIGRAM_INDEXES))
    assert row is not None
    index = None
    if row["user_prompt_indexes"] == len(TRIGRAM_INDEXES):
        index = "user_prompt"
    elif row["prompt_indexes"] == len(PLAIN_TRIGRAM_INDEXES):
        index = "prompt"
    return SearchCapabilities(row["pg_trgm"], row["btree_gin"], index)


async def search_setup(
    conn: asyncpg.Connection,
) -> tuple[SearchCapabilities, TrigramFrequencies | None]:
    """What searches are built from, as the service has them: the database's capabilities and,
    with a trigram index, a sample of trigram counts (the service refreshes its own)."""
    caps = await detect_capabilities(conn)
    return caps, await load_trigram_frequencies(conn) if caps.text_index else None


def trigram_patterns(q: str, trigrams: TrigramFrequencies | None) -> list[str]:
    """The LIKE patterns through which the trigram index is asked for ``q``'s candidates: its
    rarest trigrams (:meth:`TrigramFrequencies.windows`), or its whole pattern without a sample
    or when it has no run of ASCII letters or digits."""
    windows = None if trigrams is None else trigrams.windows(q)
    return [like_pattern(q)] if windows is None else [f"%{w}%" for w in windows]


def search_args(
    user_id: UUID,
    query: SearchQuery,
    mode: TextMode | None,
    trigrams: TrigramFrequencies | None = None,
) -> list[Any]:
    return [
        user_id,
        trigram_patterns(query.q, trigrams) if mode is TextMode.TRIGRAM else None,
        query.q if mode is not None else None,
        None if query.type is None else query.type.value,
        None if query.quality is None else query.quality.value,
        query.model,
        None if query.status is None else query.status.value,
        query.start_at,
        query.end_before,
        query.include_dismissed,
    ]


@dataclass(frozen=True, slots=True)
class SearchResult:
    assets: list[Asset]
    next_cursor: str | None
    total: int
    total_is_exact: bool
    mode: TextMode | None
    #: The prompt scan outran its serial budget and ran again on parallel workers.
    parallel_scan: bool = False


def _cursor_args(page: Page) -> list[Any]:
    cursor_value, cursor_id = page.cursor if page.cursor is not None else (None, None)
    return [cursor_value, cursor_id, page.limit + 1]


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement a search sends, with its arguments."""

    name: str
    sql: str
    args: list[Any]


def walk_needed(text: Statement, total: int) -> bool:
    """Whether a text page statement that counted ``total`` matches did not read them all
    (its ``$14``), so that its page is the walk's."""
    return total >= int(text.args[-1])


def count_statement(args: list[Any], count_cap: int, keyed: bool = True) -> Statement:
    return Statement("count", COUNT_CAPPED_SQL[keyed], [*args, count_cap + 1])


def search_statements(
    caps: SearchCapabilities,
    user_id: UUID,
    page: Page,
    count_cap: int,
    trigrams: TrigramFrequencies | None = None,
) -> list[Statement]:
    """What :func:`search_assets` sends: for a prompt query, the statement that counts the
    matches (up to :data:`READ_ALL_FACTOR` times the cap through the trigram index for a sort
    other than date, else the cap, plus one) and, when it read every one, answers the page,
    then the walk (``walk``: the page statement without trigram patterns) that answers the page
    when it did not; for filters, the page and the capped count (run at once, on two
    connections). Statements through the trigram index test the owner as a key of it, or row by
    row for a user who owns most of the tables (:data:`~reference.search.sql.OWNER_TESTS`,
    :meth:`TrigramFrequencies.owns_most`); the walk and the filters' statements always as a key.
    A prompt query that the trigram sample expects past the cap
    (:meth:`TrigramFrequencies.past_cap`) starts with the capped count alone (``count``), sent
    with the walk at once; its text page comes last, for when the count falls short after all.
    The plan benchmarks and tests explain exactly these."""
    query = page.query
    mode = caps.mode_for(query.q)
    args = search_args(user_id, query, mode, trigrams)
    page_args = [*args, *_cursor_args(page)]
    if mode is not None:
        # The sample steers only searches through the trigram index.
        sampled = trigrams if mode is TextMode.TRIGRAM else None
        keyed = not (sampled and sampled.owns_most(user_id))
        text_sql = TEXT_PAGE_SQL[query.sort, query.order, keyed]
        read_all = mode is TextMode.TRIGRAM and query.sort is not SortKey.DATE
        reads = count_cap * (READ_ALL_FACTOR if read_all else 1) + 1
        text = Statement("page", text_sql, [*page_args, reads])
        walk_args = [user_id, None, *page_args[2:]]
        walk = Statement("walk", PAGE_SQL[query.sort, query.order], walk_args)
        if sampled and sampled.past_cap(user_id, query, count_cap):
            return [count_statement(args, count_cap, keyed), walk, text]
        return [text, walk]
    return [
        Statement("page", PAGE_SQL[query.sort, query.order], page_args),
        count_statement(args, count_cap),
    ]


async def _fetch(pool: asyncpg.Pool, statement: Statement) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(statement.sql, *statement.args)
    return rows


def serial_budget(settings: Settings) -> int | None:
    """A prompt scan's time on one process (``SEARCH_SERIAL_SCAN_MS``); None when the statement's
    own bound (``DB_STATEMENT_TIMEOUT_MS``) ends it first: the scan then runs once, as the pool
    plans it, since the budget can never raise that bound and a second run past it would double
    the wait."""
    budget = settings.search_serial_scan_ms
    return budget if budget < settings.db_statement_timeout_ms else None


async def fetch_scan(
    pool: asyncpg.Pool, statement: Statement, serial_ms: int | None
) -> tuple[list[asyncpg.Record], bool]:
    """A statement that scans the user's prompts one by one (a prompt query no trigram index
    serves): on one process for at most ``serial_ms``, which answers a frequent needle (it stops
    at cap + 1 matches); past that, the needle is rare and the scan reads most of the history,
    so it runs again with parallel workers (:data:`PARALLEL_SCAN_SQL`), under the pool's own
    statement bound. ``serial_ms`` 0: on workers at once; None: once, as the pool plans it.
    Returns the rows and whether they came from the run on workers. Both runs are the same
    statement: the answer is too."""
    async with pool.acquire() as conn:
        if serial_ms is None:
            return await conn.fetch(statement.sql, *statement.args), False
        if serial_ms > 0:
            try:
                async with conn.transaction():
                    await conn.execute(f"set local statement_timeout = {int(serial_ms)}")
                    rows: list[asyncpg.Record] = await conn.fetch(statement.sql, *statement.args)
                    return rows, False
            except asyncpg.QueryCanceledError:
                pass  # the budget ran out: the same statement again, on workers
        async with conn.transaction():
            await conn.execute(PARALLEL_SCAN_SQL)
            rows = await conn.fetch(statement.sql, *statement.args)
        return rows, True


async def _fetchval(pool: asyncpg.Pool, statement: Statement) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(statement.sql, *statement.args))


async def _cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task  # its failure, if any, is not this search's: the answer comes from elsewhere


async def count_and_walk(
    pool: asyncpg.Pool, statements: list[Statement], count_cap: int
) -> tuple[list[asyncpg.Record], int]:
    """A prompt query expected past the cap (``count``, ``walk``, ``page``): the capped count
    and the walk at once, on two connections. Past the cap, the walk's rows are the page. Short
    of it (the estimate was wrong), the walk, which may read the whole history for a rare needle,
    is cancelled unless it is done, and the text page answers as it would have."""
    count, walk, text = statements
    walking = asyncio.ensure_future(_fetch(pool, walk))
    try:
        total = await _fetchval(pool, count)
    except BaseException:
        await _cancelled(walking)
        raise
    if total > count_cap or (walking.done() and walking.exception() is None):
        return await walking, total
    await _cancelled(walking)
    rows = await _fetch(pool, text)
    return rows, int(rows[0]["total"])


async def search_assets(
    pool: asyncpg.Pool,
    caps: SearchCapabilities,
    user_id: UUID,
    page: Page,
    count_cap: int,
    serial_scan_ms: int | None,
    trigrams: TrigramFrequencies | None = None,
) -> SearchResult:
    """One page and the total, counted up to ``count_cap`` + 1: for filters on two connections
    at once; for a prompt query in one statement, and a walk of the sort index for the page
    when the matches reach the cap (the index asked for the rarest trigrams in ``trigrams``'
    sample), or the count and the walk at once when the sample expects the cap reached
    (:func:`count_and_walk`). A prompt query that no trigram index serves scans on one
    process for ``serial_scan_ms``, then on parallel workers (:func:`fetch_scan`,
    :func:`serial_budget`)."""
    query = page.query
    mode = caps.mode_for(query.q)
    statements = search_statements(caps, user_id, page, count_cap, trigrams)
    parallel = False
    if mode is None:
        rows, total = await asyncio.gather(
            _fetch(pool, statements[0]), _fetchval(pool, statements[1])
        )
    elif statements[0].name == "count":
        rows, total = await count_and_walk(pool, statements, count_cap)
    else:
        if mode is TextMode.TRIGRAM:
            rows = await _fetch(pool, statements[0])
        else:
            rows, parallel = await fetch_scan(pool, statements[0], serial_scan_ms)
        total = int(rows[0]["total"])  # the statement always answers a row
        if walk_needed(statements[0], total):
            rows = await _fetch(pool, statements[1])
    if rows and rows[0]["id"] is None:  # no page: the text page's one row carries the total
        rows = []
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    assets = [Asset.from_record(r) for r in rows]
    next_cursor = encode_cursor(query, assets[-1]) if more else None
    exact = total <= count_cap
    return SearchResult(assets, next_cursor, min(total, count_cap), exact, mode, parallel)
