"""The search feature's SQL, one constant per statement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from reference.assets import ASSET_COLUMNS
from reference.search.query import SortKey, SortOrder

# --- SQL ----------------------------------------------------------------------------------------
# Parameters: $1 user, $2 trigram patterns (text[], see below), $3 the query text (needle), $4
# type, $5 quality, $6 model ('' is the plain model), $7 status, $8 start_at, $9 end_before, $10
# include_dismissed; page queries add $11/$12 (cursor value, id) and $13 (limit); a text page adds
# $14 (how many matches it reads at most, past the count cap). Absent filters are NULL: the pool
# forces custom plans, so PostgreSQL folds ``$n is null`` (and ``$2[2]``) away and each search
# gets the plan of its own literal predicate (including the partial index's dismissed predicate).
#
# A prompt is matched through ``search_fold`` (sql/0009), stored as ``prompt_fold`` (sql/0014):
# ``strpos(a.prompt_fold, lower(q)) > 0`` is ``prompt ilike '%q%'`` with q literal, at a tenth of
# the cost per row (less still read from the row than computed). No index serves ``strpos``: the
# trigram index is asked through $2, one or two LIKE patterns, each a necessary condition of the
# match (``%kni%`` for ``knight``: :mod:`reference.search.trigrams` says which), or the query's
# whole pattern. Without $2 (short queries, no trigram index, and the walk) the needle is tested
# row by row.

PATTERN_MATCH: Final = (
    "($2::text[] is null or (a.prompt_fold like lower($2[1])"
    " and ($2[2] is null or a.prompt_fold like lower($2[2]))))"
)
NEEDLE_MATCH: Final = "($3::text is null or strpos(a.prompt_fold, lower($3)) > 0)"


#: How a statement tests the owner, by whether the test is an index key. Keyed: the key of the
#: user's indexes, so a trigram index is read for the user's entries alone. Not keyed: the same
#: test, which no index takes as a key (``is true``), so the trigram index is read for the
#: needle's trigrams alone and each candidate's owner is tested on its row, with the needle. For
#: a user who owns most of the tables that reads less: the index's entries under a user id are
#: all of the user's rows, and finding which of them hold a trigram decodes that whole list (at
#: 1,000,000 assets, ``kni`` for the heavy user, 91% of the images: 9.6 ms through the key,
#: 2.5 ms without; the capped count of ``knight``, 15.1 against 7.9 ms, median of 50). For a user
#: who owns little it reads far more (every other user's candidates), so the sample decides
#: (:meth:`reference.search.trigrams.TrigramFrequencies.owns_most`).
OWNER_TESTS: Final[Mapping[bool, str]] = {True: "a.user_id = $1", False: "(a.user_id = $1) is true"}


def _search_where(keyed: bool) -> str:
    return f"""
where {OWNER_TESTS[keyed]}
  and {PATTERN_MATCH}
  and {NEEDLE_MATCH}
  and ($4::text is null or a.type = $4)
  and ($5::text is null or a.quality collate "C" = $5)
  and ($6::text is null or coalesce(a.model_type, '') collate "C" = $6)
  and ($7::text is null or a.status = $7)
  and ($8::timestamptz is null or a.created_at >= $8)
  and ($9::timestamptz is null or a.created_at < $9)
  and ($10::boolean or (a.metadata->>'workspace_dismissed') is distinct from 'true')
"""


#: The total: at most $11 (the count cap + 1) matching rows are counted, so its cost does not
#: grow with the user's history (filters only: an index-only scan of the covering partial index).
#: By owner test (:data:`OWNER_TESTS`): the key for filters, either for a prompt query.
COUNT_CAPPED_SQL: Final[Mapping[bool, str]] = {
    keyed: (
        "select count(*) from (select 1 from assets a"  # noqa: S608 (literals only)
        + _search_where(keyed)
        + "limit $11) capped"
    )
    for keyed in (True, False)
}

#: Sort expressions match the 0004 b-tree indexes exactly, so an ordered page is an index range.
SORT_EXPRESSIONS: Final[Mapping[SortKey, tuple[str, str]]] = {
    SortKey.DATE: ("a.created_at", "timestamptz"),
    SortKey.PROMPT: ('a.prompt collate "C"', "text"),
    SortKey.QUALITY: ('a.quality collate "C"', "text"),
    SortKey.MODEL: ("coalesce(a.model_type, '') collate \"C\"", "text"),
}


def _page_sql(key: SortKey, order: SortOrder) -> str:
    # Only literal fragments of this module are joined here; every value is a bound parameter.
    expr, cast = SORT_EXPRESSIONS[key]
    direction, compare = ("asc", ">") if order is SortOrder.ASC else ("desc", "<")
    return (
        f"select {ASSET_COLUMNS} from assets a{_search_where(keyed=True)}"  # noqa: S608
        f"  and ($11::{cast} is null or ({expr}, a.id) {compare} ($11::{cast}, $12::uuid))\n"
        f"order by {expr} {direction}, a.id {direction}\n"
        "limit $13"
    )


#: A page of filters, and a text search's page past the count cap (the walk: no trigram
#: patterns, the needle tested on each row of the sort index in order). The planner, which cannot
#: know how many rows match, never sorts every match of a frequent term (at 1,000,000 assets
#: ``knight`` matches 12,700 rows; its page is found within about 3,500 rows of the date index).
PAGE_SQL: Final[Mapping[tuple[SortKey, SortOrder], str]] = {
    (key, order): _page_sql(key, order) for key in SortKey for order in SortOrder
}


def _text_page_sql(key: SortKey, order: SortOrder, keyed: bool) -> str:
    """A text search's total and, when it read every match, its page, in one statement: at most
    $14 matches (more than the count cap) are collected from the trigram index (the count needs
    them anyway), whole rows; when that is all of them, the page is the top of those, sorted. The
    statement always answers one row at least: with no page, one row of NULLs carrying the total.
    With $14 matches or more, the page is the walk's (:data:`PAGE_SQL` without trigram
    patterns), a second statement.

    The assets view is named once: every name of it is two tables whose dozen indexes each the
    planner weighs, for every search (custom plans). A lookup of the page's rows by key and the
    walk in the same statement, as before, made planning cost more than running it (plan scale,
    ``knight``: 1.3 ms planning, 0.9 ms execution; now about half of both).
    """
    expr, cast = SORT_EXPRESSIONS[key]
    direction, compare = ("asc", ">") if order is SortOrder.ASC else ("desc", "<")
    return (
        "with matches as materialized (\n"  # noqa: S608 (literal fragments only)
        f"  select {ASSET_COLUMNS}, {expr} as sort_key from assets a{_search_where(keyed)}"
        "  limit $14\n"
        "), counted as (select count(*) as total from matches)\n"
        "select p.*, c.total from counted c left join lateral (\n"
        "  select m.* from matches m\n"
        "  where c.total < $14\n"
        f"    and ($11::{cast} is null or (m.sort_key, m.id) {compare} ($11::{cast}, $12::uuid))\n"
        f"  order by m.sort_key {direction}, m.id {direction} limit $13\n"
        ") p on true\n"
        f"order by p.sort_key {direction}, p.id {direction}"
    )


#: Text searches: the capped total on every row, and the page's rows below the cap; by sort,
#: order and owner test (:data:`OWNER_TESTS`).
TEXT_PAGE_SQL: Final[Mapping[tuple[SortKey, SortOrder, bool], str]] = {
    (key, order, keyed): _text_page_sql(key, order, keyed)
    for key in SortKey
    for order in SortOrder
    for keyed in (True, False)
}


#: A scan of the user's prompts that outran its serial budget runs again with these (one
#: transaction): PostgreSQL costs a parallel plan with setup and per-row transfer charges that a
#: scan stopped early at cap + 1 matches never repays, so it plans no workers. A rare needle
#: reads the whole history instead, and there two workers nearly halve it (1,000,000 assets,
#: ``q=zz``: 465 ms on one process, 283 ms this way), while a frequent one lost to their start
#: (``q=dr``: 5 against 11 ms with workers at once). The server's
#: ``max_parallel_workers_per_gather`` still bounds them; with no worker free, the leader scans
#: alone, as before.
PARALLEL_SCAN_SQL: Final = (
    "set local parallel_setup_cost = 0; set local parallel_tuple_cost = 0; "
    "set local min_parallel_table_scan_size = 0"
)


CAPABILITIES_SQL: Final = """
select
    exists (select 1 from pg_extension where extname = 'pg_trgm') as pg_trgm,
    exists (select 1 from pg_extension where extname = 'btree_gin') as btree_gin,
    (select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relname = any($1::text[]) and i.indisvalid) as user_prompt_indexes,
    (select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relname = any($2::text[]) and i.indisvalid) as prompt_indexes
"""


GET_STATE_SQL: Final = "select state, updated_at from search_state where user_id = $1"
PUT_STATE_SQL: Final = """
insert into search_state (user_id, state, updated_at) values ($1, $2, now())
on conflict (user_id) do update set state = excluded.state, updated_at = excluded.updated_at
returning updated_at
"""


#: The ``tablesample bernoulli`` percent that keeps about $1 rows of the asset tables (all of them
#: while they are smaller, or never analysed).
TRIGRAM_SAMPLE_PERCENT_SQL: Final = """
select least(100.0, $1 * 100.0 / greatest(1.0, sum(greatest(c.reltuples, 0))))::float8
from pg_class c
where c.oid in ('images'::regclass, 'videos'::regclass)
"""

#: The sampled rows ($1: percent, each row kept at random): what a search filters on, and each
#: prompt's ASCII trigrams (pg_trgm's ``show_trgm``, as the index stores them).
TRIGRAM_SAMPLE_SQL: Final = """
select s.*, array(
    select t from unnest(show_trgm(s.prompt_fold)) as t where t collate "C" ~ '^[a-z0-9]{3}$'
) as trigrams
from (
    select 'image'::text as type, id, user_id, prompt_fold, status, quality, model_type,
           created_at, metadata->>'workspace_dismissed' as dismissed
    from images tablesample bernoulli ($1::real)
    union all
    select 'video'::text, id, user_id, prompt_fold, status, quality, model_type,
           created_at, metadata->>'workspace_dismissed'
    from videos tablesample bernoulli ($1::real)
) s
"""
