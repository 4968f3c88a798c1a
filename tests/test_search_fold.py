"""Migrations 0009 and 0010: ``search_fold`` matches exactly as ILIKE, and the indexes exist."""

from __future__ import annotations

from reference.db.pool import connect
from reference.search.query import PLAIN_TRIGRAM_INDEXES, TRIGRAM_INDEXES
from reference.search.service import detect_capabilities, like_pattern

PROMPTS = [
    "Knight in silver armor",
    "KNIGHT, 85mm lens, f/1.8",
    "Ça va? ÉCOLE d'été",
    "Straße im Regen",
    "İstanbul at blue hour",
    "\u212a for Kelvin: \u212anight",
    "日本語の knight",
    "100% pure_cotton back\\slash",
    "",
]
QUERIES = ["knight", "école", "ÉTÉ", "straße", "istanbul", "%", "_c", "\\", "k", "日本", "f/1"]

COMPARE = """
select p, q,
       search_fold(p) = lower(p) as same_text,
       p ilike pattern as ilike,
       search_fold(p) like lower(pattern) as folded,
       strpos(search_fold(p), lower(q)) > 0 as needle
from unnest($1::text[]) as p
cross join unnest($2::text[], $3::text[]) as x (q, pattern)
"""
VALID_INDEXES = """
select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
where i.indisvalid and c.relname = any($1::text[])
"""
FILTER_WALK_INDEXES = [
    f"idx_{table}_user_{column}_created_active"
    for table in ("images", "videos")
    for column in ("quality", "model")
]


async def test_search_fold_is_lower_and_its_matches_are_ilike_matches(seeded_dsn: str) -> None:
    async with connect(seeded_dsn) as conn:
        rows = await conn.fetch(COMPARE, PROMPTS, QUERIES, [like_pattern(q) for q in QUERIES])
        ctype = await conn.fetchval("show lc_ctype")
    assert len(rows) == len(PROMPTS) * len(QUERIES)
    for r in rows:
        assert r["same_text"], r["p"]
        assert r["folded"] == r["ilike"] == r["needle"], (r["p"], r["q"])
    matched = {(r["p"], r["q"]) for r in rows if r["ilike"]}
    # Case beyond ASCII folds as the database's LC_CTYPE folds it, for ILIKE as for
    # search_fold: a C ctype (the throwaway cluster's --no-locale) folds ASCII only.
    folds_unicode = ctype not in ("C", "POSIX")
    assert (("Ça va? ÉCOLE d'été", "école") in matched) is folds_unicode
    assert ("Knight in silver armor", "knight") in matched
    assert ("Straße im Regen", "straße") in matched
    assert 0 < len(matched) < len(rows)


async def test_the_search_indexes_are_built_and_the_ilike_ones_dropped(seeded_dsn: str) -> None:
    async with connect(seeded_dsn) as conn:
        caps = await detect_capabilities(conn)
        trigram = {"user_prompt": TRIGRAM_INDEXES, "prompt": PLAIN_TRIGRAM_INDEXES}.get(
            caps.trigram_index or "", ()
        )
        expected = {*trigram, *FILTER_WALK_INDEXES}
        old = [f"idx_{t}_user_prompt_trgm" for t in ("images", "videos")]
        found = await conn.fetch(VALID_INDEXES, [*expected, *old])
    assert {r["relname"] for r in found} == expected
    if caps.pg_trgm:
        assert trigram
