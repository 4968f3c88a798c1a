"""A prompt query of a user who owns most of the tables tests the owner row by row, not as a key
of the trigram index (``OWNER_TESTS``): the sample decides, the answer never changes."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest

from reference.db.pool import SERVER_SETTINGS, connect
from reference.search.query import Page, SortKey, SortOrder, parse_query
from reference.search.service import (
    SearchCapabilities,
    detect_capabilities,
    search_statements,
)
from reference.search.sql import COUNT_CAPPED_SQL, OWNER_TESTS, PAGE_SQL, TEXT_PAGE_SQL
from reference.search.trigrams import (
    OWNS_MOST_SHARE,
    TrigramFrequencies,
    load_trigram_frequencies,
)
from tests.search_support import oracle_ids, search_pages, user_assets
from tests.test_search_past_cap import sampled, trigrams_of
from tests.test_search_plans import plan_nodes

CAPS = SearchCapabilities(pg_trgm=True, btree_gin=True, trigram_index="user_prompt")
USER = uuid4()
OTHER = uuid4()


def owning(share: int, of: int = 100) -> TrigramFrequencies:
    """A sample of ``of`` rows, ``share`` of them ``USER``'s, the rest ``OTHER``'s."""
    return TrigramFrequencies({"kni": 1}, of, {}, 1.0, {USER: share, OTHER: of - share})


def test_the_share_of_sampled_rows_says_who_owns_most() -> None:
    cut = int(OWNS_MOST_SHARE * 100)
    assert owning(cut).owns_most(USER)
    assert not owning(cut - 1).owns_most(USER)
    assert not owning(cut).owns_most(OTHER)
    assert not owning(cut).owns_most(uuid4())
    assert not TrigramFrequencies().owns_most(USER)


def test_only_the_trigram_statements_of_such_a_user_test_the_owner_by_row() -> None:
    keyed, by_row = OWNER_TESTS[True], OWNER_TESTS[False]
    assert keyed in by_row  # the same test, which no index takes as a key
    most, few = owning(90), owning(10)
    knight = Page(parse_query({"q": "knight"}), 50)
    page, walk = search_statements(CAPS, USER, knight, 1_000, most)
    assert page.sql == TEXT_PAGE_SQL[SortKey.DATE, SortOrder.DESC, False]
    assert by_row in page.sql
    assert walk.sql == PAGE_SQL[SortKey.DATE, SortOrder.DESC]  # a walk of the user's index
    assert by_row not in walk.sql
    page, _ = search_statements(CAPS, USER, knight, 1_000, few)
    assert page.sql == TEXT_PAGE_SQL[SortKey.DATE, SortOrder.DESC, True]
    assert by_row not in page.sql
    # Past the cap (the sample's rows of the user that match): the count too.
    knights = [sampled("a dark knight", user=USER) for _ in range(10)]
    past = dataclasses.replace(most, users={USER: dict.fromkeys(trigrams_of("knight"), knights)})
    count, _, _ = search_statements(CAPS, USER, knight, 1, past)
    assert count.sql == COUNT_CAPPED_SQL[False]
    # No trigram to look up, or filters only: the user's indexes, by key.
    for params in ({"q": "kn"}, {"quality": "high"}):
        for statement in search_statements(CAPS, USER, Page(parse_query(params), 50), 1, most):
            assert by_row not in statement.sql, (params, statement.name)
    plain = SearchCapabilities(pg_trgm=False, btree_gin=False, trigram_index=None)
    for statement in search_statements(plain, USER, knight, 1_000, most):
        assert by_row not in statement.sql


async def _other_users_matches(dsn: str, user: UUID, q: str) -> int:
    async with connect(dsn) as conn:
        return int(
            await conn.fetchval(
                "select count(*) from assets where user_id <> $1 and strpos(prompt_fold, $2) > 0",
                user,
                q,
            )
        )


@pytest.mark.parametrize("sort", ["date", "prompt"])
async def test_the_owner_tested_by_row_answers_as_the_key(seeded_template: Any, sort: str) -> None:
    """The heavy user's searches with a sample that says the user owns every row: no index of
    the plan is read by the user id, and every page, by cursor, and the total
    are the oracle's, though other users' prompts hold the same words; a cap the most frequent
    word passes, and one it does not. Fails if the owner were not tested on each row."""
    user = seeded_template.heavy_user
    dsn = seeded_template.dsn
    assets = await user_assets(dsn, user)
    words = Counter(w for a in assets for w in set(re.findall(r"[a-z]{5,}", a.prompt.lower())))
    async with connect(dsn, server_settings=SERVER_SETTINGS) as conn:
        caps = await detect_capabilities(conn)
        sample = await load_trigram_frequencies(conn, sample_rows=10**9)
    assert caps.text_index
    assert not sample.owns_most(user)
    owner = dataclasses.replace(sample, owned={user: sample.rows})
    frequent = max(words, key=lambda w: (words[w], w))
    middle = max((w for w, n in words.items() if 10 <= n <= 300), key=words.__getitem__)
    for q, cap in ((frequent, words[frequent] // 4), (middle, 1_000)):
        assert await _other_users_matches(dsn, user, q) > 0
        expected = oracle_ids(assets, q=q, sort=sort, order="asc")
        first = Page(parse_query({"q": q, "sort": sort, "order": "asc"}), 40)
        got: list[str] = []
        async for page, result in search_pages(dsn, caps, user, first, cap, owner):
            assert OWNER_TESTS[False] in search_statements(caps, user, page, cap, owner)[0].sql
            exact = len(expected) <= cap
            assert (result.total, result.total_is_exact) == (min(len(expected), cap), exact)
            got += [str(a.id) for a in result.assets]
        assert got == expected, q
    async with connect(dsn, server_settings=SERVER_SETTINGS) as conn, conn.transaction():
        # The tiny dataset's tables are read whole more cheaply than through any index.
        await conn.execute("set local enable_seqscan = off")
        first = Page(parse_query({"q": middle}), 50)
        for sample_of, keyed in ((owner, False), (sample, True)):
            statement = search_statements(caps, user, first, 1_000, sample_of)[0]
            raw = await conn.fetchval("explain (format json) " + statement.sql, *statement.args)
            plan = orjson.loads(raw) if isinstance(raw, str) else raw
            conds = [n.get("Index Cond", "") for n in plan_nodes(plan) if "Index Name" in n]
            assert conds, orjson.dumps(plan).decode()
            assert any("user_id" in c for c in conds) == keyed, conds
