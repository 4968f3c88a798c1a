"""The search feature's SQL, one constant per statement."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from reference.assets import ASSET_COLUMNS
from reference.search.query import SortKey, SortOrder

# --- SQL ----------------------------------------------------------------------------------------
# Parameters: $1 user, $2 ILIKE pattern, $3 short needle, $4 type, $5 quality, $6 model ('' is
# the plain model), $7 status, $8 start_at, $9 end_before, $10 include_dismissed; page queries add
# $11/$12 (cursor value, id) and $13 (limit); a text page adds $14 (count cap + 1) and $15 (the
# query text). Absent filters are NULL: the pool forces custom plans, so PostgreSQL folds
# ``$n is null`` away and each search gets the plan of its own literal predicate (including the
# partial index's dismissed predicate).
#
# A prompt is matched through ``search_fold`` (sql/0009): ``search_fold(prompt) like lower($2)``
# is ``prompt ilike $2`` at a tenth of the cost per row, and the trigram index is on the same
# expression.

PATTERN_MATCH: Final = "($2::text is null or search_fold(a.prompt) like lower($2))"
NEEDLE_MATCH: Final = "($3::text is null or strpos(search_fold(a.prompt), lower($3)) > 0)"
#: The same test as a literal substring, which no trigram index serves: a walk of a sort index.
WALK_MATCH: Final = "strpos(search_fold(a.prompt), lower($15)) > 0"


def _where(text: str) -> str:
    return f"""
where a.user_id = $1
  and {text}
  and ($4::text is null or a.type = $4)
  and ($5::text is null or a.quality collate "C" = $5)
  and ($6::text is null or coalesce(a.model_type, '') collate "C" = $6)
  and ($7::text is null or a.status = $7)
  and ($8::timestamptz is null or a.created_at >= $8)
  and ($9::timestamptz is null or a.created_at < $9)
  and ($10::boolean or (a.metadata->>'workspace_dismissed') is distinct from 'true')
"""


SEARCH_WHERE: Final = _where(f"{PATTERN_MATCH}\n  and {NEEDLE_MATCH}")
WALK_WHERE: Final = _where(WALK_MATCH)

#: The total: at most $11 (the count cap + 1) matching rows are counted, so its cost does not
#: grow with the user's history (filters only: an index-only scan of the covering partial index).
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
        f"select {ASSET_COLUMNS} from assets a{SEARCH_WHERE}"  # noqa: S608
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
    must test every row it passes. The statement collects at most $14 matches from the trigram
    index (the count needs them anyway); when that is all of them, the page is the top of
    those, sorted. Only past the cap does it walk the sort index, testing each row with the
    substring form of the match (``WALK_MATCH``), which the trigram index cannot serve: the
    planner, which cannot know how many rows match, never sorts every match of a frequent term
    (at 1,000,000 assets ``knight`` matches 12,700 rows; its page is found within about
    3,500 rows of the date index).
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
        f"select a.*, f.sort_key, (select total from counted) as total\n"
        "from few f cross join lateral (\n"
        # OFFSET 0 keeps the lookup a subquery: one primary-key probe per row of the page,
        # whatever the planner guesses the page's size to be.
        f"  select {ASSET_COLUMNS} from assets a\n"
        "  where a.id = f.id and a.type = f.type offset 0\n"
        ") a\n"
        "union all\n"
        f"(select {ASSET_COLUMNS}, {expr}, (select total from counted)\n"
        f"from assets a{WALK_WHERE}"
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
