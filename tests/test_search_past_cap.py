"""A search the trigram sample expects past the count cap: the capped count and the walk of the
sort index at once. The estimate steers the cost only: right or wrong, the answer is the
oracle's."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from reference.assets import Asset, ContentType
from reference.db.pool import connect, create_pool
from reference.search import service
from reference.search.in_memory import is_dismissed
from reference.search.query import Page, parse_query
from reference.search.service import (
    READ_ALL_FACTOR,
    detect_capabilities,
    search_assets,
    search_statements,
)
from reference.search.trigrams import (
    ASCII_RUN,
    PAST_CAP_MIN_HITS,
    TrigramFrequencies,
    load_trigram_frequencies,
)
from tests.search_support import oracle_ids, search_pages, user_assets

USER = uuid4()


def sampled(prompt: str, quality: str = "fast", user: UUID = USER) -> Asset:
    return Asset(
        ContentType.IMAGE, uuid4(), user, None, prompt, "completed", quality, None, "", "", None,
        {}, datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip


def trigrams_of(prompt: str) -> set[str]:
    """As the sample lists them: the trigrams of the prompt's ASCII runs, lowercase."""
    return {r[i : i + 3] for r in ASCII_RUN.findall(prompt.lower()) for i in range(len(r) - 2)}


def sample_of(assets: list[Asset], fraction: float) -> TrigramFrequencies:
    """The sample of ``assets`` (one user's), standing for ``fraction`` of the tables."""
    counts: Counter[str] = Counter()
    holding: dict[str, list[Asset]] = {}
    for asset in assets:
        trigrams = trigrams_of(asset.prompt)
        counts.update(trigrams)
        for trigram in trigrams:
            holding.setdefault(trigram, []).append(asset)
    return TrigramFrequencies(dict(counts), len(assets), {assets[0].user_id: holding}, fraction)


# 40 sampled rows of the user, 1% of the tables: each sampled row stands for 100. With a cap of
# 100, a search is past it at 2 x 100 x 1% = 2, at least PAST_CAP_MIN_HITS sampled matches.
ROWS = (
    [sampled("a dark knight", "high") for _ in range(3)]
    + [sampled("the knight rides") for _ in range(3)]
    + [sampled("a castle at dusk") for _ in range(34)]
)
SAMPLE = sample_of(ROWS, 0.01)


def test_the_sampled_matches_of_the_user_say_past_the_cap() -> None:
    assert PAST_CAP_MIN_HITS == 5
    assert SAMPLE.past_cap(USER, parse_query({"q": "knight"}), 100)  # 6 sampled: about 600
    assert SAMPLE.past_cap(USER, parse_query({"q": "KNIGHT"}), 100)
    assert not SAMPLE.past_cap(USER, parse_query({"q": "knight"}), 400)  # 600 < 2 x 400
    # The filters count: 3 high-quality matches are too few to say anything.
    assert not SAMPLE.past_cap(USER, parse_query({"q": "knight", "quality": "high"}), 100)
    assert not SAMPLE.past_cap(USER, parse_query({"q": "dark knight"}), 100)
    assert not SAMPLE.past_cap(USER, parse_query({"q": "the knight"}), 100)
    # Every row holding the rarest trigram is tested against the whole needle.
    assert not SAMPLE.past_cap(USER, parse_query({"q": "knights"}), 100)
    assert SAMPLE.past_cap(USER, parse_query({"q": "cast"}), 100)
    # Another user's history, a query without ASCII trigrams, no sample: nothing is expected.
    assert not SAMPLE.past_cap(uuid4(), parse_query({"q": "knight"}), 100)
    assert not SAMPLE.past_cap(USER, parse_query({"q": "ñoño"}), 100)
    assert not TrigramFrequencies().past_cap(USER, parse_query({"q": "knight"}), 100)


async def test_the_sample_keeps_each_users_rows(seeded_template: Any) -> None:
    """On a database smaller than the sample, every row is sampled: each user's rows, with
    their folded prompts and what a search filters on."""
    user = seeded_template.heavy_user
    assets = {a.id: a for a in await user_assets(seeded_template.dsn, user)}
    async with connect(seeded_template.dsn) as conn:
        frequencies = await load_trigram_frequencies(conn, sample_rows=10**9)
    assert frequencies.fraction == 1.0
    holding = frequencies.users[user]
    expected: dict[str, list[UUID]] = {}
    for asset in assets.values():
        for trigram in trigrams_of(asset.prompt):
            expected.setdefault(trigram, []).append(asset.id)
    assert {t: sorted(a.id for a in listed) for t, listed in holding.items()} == {
        t: sorted(ids) for t, ids in expected.items()
    }
    for got in {a.id: a for listed in holding.values() for a in listed}.values():
        real = assets[got.id]
        assert got.prompt == real.prompt.lower()
        assert (got.type, got.quality, got.model_type, got.status, got.created_at) == (
            real.type, real.quality, real.model_type, real.status, real.created_at,
        )  # fmt: skip
        assert is_dismissed(got) == is_dismissed(real)


def _word_counts(assets: list[Asset]) -> Counter[str]:
    """How many of ``assets``' prompts hold each word of five ASCII letters or more."""
    return Counter(w for a in assets for w in set(re.findall(r"[a-z]{5,}", a.prompt.lower())))


def _frequent_word(assets: list[Asset]) -> str:
    counts = _word_counts(assets)
    return max(counts, key=lambda w: (counts[w], w))


async def test_a_search_past_the_cap_counts_and_walks_at_once(seeded_template: Any) -> None:
    """With the service's own sample and a cap the user's most frequent word passes, the
    search sends the count and the walk; every page is the oracle's, the total is the cap."""
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    word = _frequent_word(assets)
    expected = oracle_ids(assets, q=word, sort="prompt", order="asc")
    cap = len(expected) // 4
    async with connect(seeded_template.dsn) as conn:
        caps = await detect_capabilities(conn)
        trigrams = await load_trigram_frequencies(conn, sample_rows=10**9)
    query = parse_query({"q": word, "sort": "prompt", "order": "asc"})
    got: list[str] = []
    async for page, result in search_pages(
        seeded_template.dsn, caps, user, Page(query, 50), cap, trigrams
    ):
        statements = search_statements(caps, user, page, cap, trigrams)
        assert [s.name for s in statements] == ["count", "walk", "page"]
        assert (result.total, result.total_is_exact) == (cap, False)
        got += [str(a.id) for a in result.assets]
    assert got == expected


def _rare_word(assets: list[Asset]) -> str:
    counts = _word_counts(assets)
    return min((w for w, n in counts.items() if n >= 3), key=lambda w: (counts[w], w))


@pytest.mark.parametrize("rare", [False, True], ids=["none", "few"])
async def test_a_wrong_estimate_still_answers_exactly(seeded_template: Any, rare: bool) -> None:
    """A sample that expects thousands of matches for a needle that has none, or few: the count
    falls short, the walk (which may read the whole history) is cancelled unless done, and the
    text page answers, exactly; the pool's connections serve the next search."""
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    q = _rare_word(assets) if rare else "zqxjv"
    wrong = sample_of([sampled(q.lower(), user=user) for _ in range(50)], 0.001)
    async with connect(seeded_template.dsn) as conn:
        caps = await detect_capabilities(conn)
    pool = await create_pool(seeded_template.dsn, min_size=1, max_size=2)
    try:
        for _ in range(3):
            page = Page(parse_query({"q": q}), 50)
            statements = search_statements(caps, user, page, 1_000, wrong)
            assert [s.name for s in statements] == ["count", "walk", "page"]
            result = await search_assets(pool, caps, user, page, 1_000, None, wrong)
            expected = oracle_ids(assets, q=q)
            assert [str(a.id) for a in result.assets] == expected[:50]
            assert (result.total, result.total_is_exact) == (len(expected), True)
            assert rare == bool(expected)
            word = _frequent_word(assets)
            plain = await search_assets(
                pool, caps, user, Page(parse_query({"q": word}), 50), 1_000, None
            )
            assert [str(a.id) for a in plain.assets] == oracle_ids(assets, q=word)[:50]
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("share", "sort", "within"),
    [((2, 3), "prompt", True), ((1, 4), "prompt", False), ((2, 3), "date", False)],
    ids=["read-all", "walk", "by-date"],
)
async def test_matches_past_the_cap_within_the_read_bound_answer_in_one_statement(
    seeded_template: Any,
    monkeypatch: pytest.MonkeyPatch,
    share: tuple[int, int],
    sort: str,
    within: bool,
) -> None:
    """A text search through the trigram index sorted by other than date reads up to
    READ_ALL_FACTOR times the cap of its matches: past the cap but within that, its page is the
    top of them, with no walk of a sort index; beyond it, or by date, the walk answers the page.
    Every page is the oracle's either way."""
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    word = _frequent_word(assets)
    expected = oracle_ids(assets, q=word, sort=sort, order="asc")
    cap = len(expected) * share[0] // share[1]
    assert cap < len(expected)
    assert (len(expected) < READ_ALL_FACTOR * cap + 1) == (share == (2, 3))
    sent: list[str] = []
    fetch = service._fetch

    async def spied(pool: Any, statement: Any) -> Any:
        sent.append(statement.name)
        return await fetch(pool, statement)

    monkeypatch.setattr(service, "_fetch", spied)
    async with connect(seeded_template.dsn) as conn:
        caps = await detect_capabilities(conn)
    query = parse_query({"q": word, "sort": sort, "order": "asc"})
    got: list[str] = []
    async for _, result in search_pages(seeded_template.dsn, caps, user, Page(query, 20), cap):
        assert sent == (["page"] if within else ["page", "walk"])
        sent.clear()
        assert (result.total, result.total_is_exact) == (cap, False)
        got += [str(a.id) for a in result.assets]
    assert got == expected
