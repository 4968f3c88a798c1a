"""The search feature's SQL, one constant per statement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from reference.asset_json import ASSET_JSON
from reference.assets import ASSET_COLUMNS
from reference.search.query import SortKey, SortOrder

# --- SQL ----------------------------------------------------------------------------------------
# Parameters: $1 user, $2 ILIKE pattern, $3 short needle, $4 type, $5 quality, $6 model ('' is
# the plain model), $7 status, $8 start_at, $9 end_before, $10 include_dismissed; page queries add
# $11/$12 (cursor value, id) and $13 (limit). Absent filters are NULL: the pool forces custom
# plans, so PostgreSQL folds ``$n is null`` away and each search gets the plan of its own
# literal predicate (including the partial index's dismissed predicate).

SEARCH_WHERE: Final = """
where a.user_id = $1
  and ($2::text is null or a.prompt ilike $2)
  and ($3::text is null or strpos(lower(a.prompt), lower($3)) > 0)
  and ($4::text is null or a.type = $4)
  and ($5::text is null or a.quality collate "C" = $5)
  and ($6::text is null or coalesce(a.model_type, '') collate "C" = $6)
  and ($7::text is null or a.status = $7)
  and ($8::timestamptz is null or a.created_at >= $8)
  and ($9::timestamptz is null or a.created_at < $9)
  and ($10::boolean or (a.metadata->>'workspace_dismissed') is distinct from 'true')
"""

#: Filters only: exact, from the covering partial index (an index-only scan of the user's rows).
COUNT_SQL: Final = "select count(*) from assets a" + SEARCH_WHERE  # noqa: S608 (literals only)
#: With a prompt query every candidate row is tested: count at most $11 of them.
COUNT_CAPPED_SQL: Final = (
    "select count(*) from (select 1 from assets a"  # noqa: S608 (literals only)
    + SEARCH_WHERE
    + "limit $11) capped"
)

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
        f"select {ASSET_COLUMNS}, {ASSET_JSON} as item from assets a{SEARCH_WHERE}"  # noqa: S608
        f"  and ($11::{cast} is null or ({expr}, a.id) {compare} ($11::{cast}, $12::uuid))\n"
        f"order by {expr} {direction}, a.id {direction}\n"
        "limit $13"
    )


PAGE_SQL: Final[Mapping[tuple[SortKey, SortOrder], str]] = {
    (key, order): _page_sql(key, order) for key in SortKey for order in SortOrder
}


def _text_page_sql(key: SortKey, order: SortOrder) -> str:
    """A text search's page and its capped total in one statement ($14 = count cap + 1).

    The trigram index yields the matches in no useful order, a sort index yields the order but
    must test every row it passes. Which is cheaper depends on how many rows match, which the
    planner can only guess (at 100,000 assets it walked 12,000 rows of the prompt index for 41
    matches of ``knight`` with ``quality=high``, 10 ms instead of 2). So the statement finds
    out: it collects at most $14 matches (the count needs them anyway); when that is all of
    them, the page is the top of those, sorted; only a larger match set walks the sort index,
    where a frequent term finds its page of matches within a few hundred rows.
    """
    expr, cast = SORT_EXPRESSIONS[key]
    direction, compare = ("asc", ">") if order is SortOrder.ASC else ("desc", "<")
    after = f"($11::{cast} is null or ({{key}}, {{id}}) {compare} ($11::{cast}, $12::uuid))"
    few_after = after.format(key="m.sort_key", id="m.id")
    return (
        "with matches as materialized (\n"  # noqa: S608 (literal fragments only)
        f"  select a.type, a.id, {expr} as sort_key from assets a{SEARCH_WHERE}"
        "  limit $14\n"
        "), counted as (select count(*) as total from matches),\n"
        "few as (\n"
        "  select m.type, m.id, m.sort_key from matches m\n"
        f"  where (select total from counted) < $14 and {few_after}\n"
        f"  order by m.sort_key {direction}, m.id {direction} limit $13\n"
        ")\n"
        f"select {ASSET_COLUMNS}, {ASSET_JSON} as item, f.sort_key,\n"
        "  (select total from counted) as total\n"
        "from few f join assets a on a.id = f.id and a.type = f.type\n"
        "union all\n"
        f"(select {ASSET_COLUMNS}, {ASSET_JSON}, {expr}, (select total from counted)\n"
        f"from assets a{SEARCH_WHERE}"
        f"  and (select total from counted) >= $14 and {after.format(key=expr, id='a.id')}\n"
        f"order by {expr} {direction}, a.id {direction} limit $13)\n"
        f"order by sort_key {direction}, id {direction}"
    )


#: Text searches: page rows, each carrying ``total`` (the matches counted up to $14).
TEXT_PAGE_SQL: Final[Mapping[tuple[SortKey, SortOrder], str]] = {
    (key, order): _text_page_sql(key, order) for key in SortKey for order in SortOrder
}


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
