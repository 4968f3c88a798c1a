"""Which trigrams of a query the index is asked for: the choice, the sample behind it, and that the
choice never changes an answer."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import pytest

from reference.db.pool import SERVER_SETTINGS, connect, create_pool
from reference.search.query import Page, parse_query
from reference.search.service import (
    detect_capabilities,
    search_assets,
    search_statements,
    trigram_patterns,
)
from reference.search.trigrams import (
    ASCII_RUN,
    TrigramFrequencies,
    TrigramStatistics,
    load_trigram_frequencies,
)
from tests.search_support import oracle_ids, user_assets

COUNTS = {"kni": 10, "nig": 40, "igh": 500, "ght": 480, "dar": 30, "ark": 60, "the": 700}
FREQUENCIES = TrigramFrequencies(COUNTS, rows=1_000)


@pytest.mark.parametrize(
    ("q", "windows"),
    [
        ("knight", ["kni"]),
        ("KNIGHT", ["KNI"]),  # as written: the database lowercases it as it lowercases q
        ("dark knight", ["kni", "dar"]),  # the rarest of each word, rarest word first
        ("the knight", ["kni"]),  # "the" is in 70% of prompts: not worth intersecting
        ("night", ["nig"]),
        ("nighty", ["hty"]),  # a trigram the sample never saw is the rarest of all
    ],
)
def test_the_rarest_trigram_of_each_word_is_looked_up(q: str, windows: list[str]) -> None:
    assert FREQUENCIES.windows(q) == windows


def test_at_most_two_trigrams_and_none_without_an_ascii_run() -> None:
    # rider's trigrams are all unseen (its first, "rid", is taken), then knight's "kni" (1%);
    # dark's "dar" would be a third
    assert FREQUENCIES.windows("dark knight rider") == ["rid", "kni"]
    assert FREQUENCIES.windows("ñoño") is None
    assert FREQUENCIES.windows("a b") is None
    # Without a usable window, the index is asked for the whole pattern, escaped.
    assert trigram_patterns("ñoño 5%", FREQUENCIES) == ["%ñoño 5\\%%"]
    assert trigram_patterns("dark knight", FREQUENCIES) == ["%kni%", "%dar%"]
    assert trigram_patterns("dark knight", None) == ["%dark knight%"]


def test_without_a_sample_the_whole_pattern_is_looked_up() -> None:
    """No sample (not taken, or an empty database): nothing says which trigram is rare."""
    assert TrigramFrequencies().windows("dark knight") is None
    assert trigram_patterns("dark knight", TrigramFrequencies()) == ["%dark knight%"]
    # A sample that never saw a trigram counts it 0: the first of each word, first word first.
    assert TrigramFrequencies({"zzz": 1}, rows=1).windows("dark knight") == ["dar", "kni"]


async def test_the_sample_counts_each_prompt_once_per_trigram(seeded_template: Any) -> None:
    """On a database smaller than the sample, every prompt is read: the counts are exactly those
    of the prompts' runs of ASCII letters and digits, one per prompt that holds the trigram."""
    async with connect(seeded_template.dsn) as conn:
        prompts = [
            r[0]
            for r in await conn.fetch(
                "select prompt from images union all select prompt from videos"
            )
        ]
        frequencies = await load_trigram_frequencies(conn, sample_rows=10 * len(prompts))
    expected: Counter[str] = Counter()
    for prompt in prompts:
        expected.update(
            {
                run[i : i + 3]
                for run in ASCII_RUN.findall(prompt.lower())
                for i in range(len(run) - 2)
            }
        )
    assert frequencies.rows == len(prompts)
    assert dict(frequencies.counts) == dict(expected)


async def test_the_service_loads_the_sample_at_start(
    make_client: Any, seeded_template: Any
) -> None:
    from reference.search.views import TRIGRAMS

    client = await make_client(seeded_template.dsn)
    statistics: TrigramStatistics = client.server.app[TRIGRAMS]
    assert statistics.current.rows > 0
    assert statistics.current.counts


async def test_a_sample_that_cannot_be_taken_keeps_the_last_one(seeded_template: Any) -> None:
    """The sample steers cost only: a database gone away (here, a closed pool) is logged and the
    last sample kept, and the service goes on."""
    statistics = TrigramStatistics(FREQUENCIES)
    pool = await create_pool(seeded_template.dsn, min_size=1, max_size=1)
    await pool.close()
    async with statistics.refreshing(pool, every=0.01):
        await asyncio.sleep(0.05)  # a few refreshes, each failing
    assert statistics.current is FREQUENCIES
    live = await create_pool(seeded_template.dsn, min_size=1, max_size=1)
    try:
        async with statistics.refreshing(live, every=60):
            assert statistics.current.rows > 0  # loaded before the block starts
    finally:
        await live.close()


def _forcing(q: str, window: str) -> TrigramFrequencies:
    """A sample in which ``window`` is the only trigram of ``q`` worth looking up: every other
    one is in every prompt."""
    return TrigramFrequencies(dict.fromkeys(_all_windows(q.lower()), 1000) | {window: 0}, 1_000)


def _all_windows(text: str) -> list[str]:
    return [run[i : i + 3] for run in ASCII_RUN.findall(text) for i in range(len(run) - 2)]


async def test_every_choice_of_trigrams_gives_the_same_answer(seeded_template: Any) -> None:
    """For needles of one and two words taken from the heavy user's prompts, each of their
    trigrams looked up in turn (and the whole pattern) gives the oracle's page and total: the
    choice steers the cost only. Fails if a chosen trigram were not a substring of the query, or
    the candidates were not tested against the whole of it."""
    user = seeded_template.heavy_user
    assets = await user_assets(seeded_template.dsn, user)
    words = Counter(w for a in assets for w in set(re.findall(r"[a-z]{5,}", a.prompt.lower())))
    # A word on a page of its own (below the cap, the page comes from the looked-up candidates).
    word = max((w for w, n in words.items() if 10 <= n <= 300), key=words.__getitem__)
    phrase = next(
        m.group(0)
        for a in assets
        if (m := re.search(rf"\w+ {word}", a.prompt.lower())) is not None
        and len(m.group(0)) > len(word) + 3
    )
    async with connect(seeded_template.dsn, server_settings=SERVER_SETTINGS) as conn:
        caps = await detect_capabilities(conn)
    assert caps.text_index
    pool = await create_pool(seeded_template.dsn, min_size=1, max_size=2)
    try:
        for q in (word, phrase.upper(), f"{word}s"):
            expected = oracle_ids(assets, q=q)
            page = Page(parse_query({"q": q}), 500)
            choices: list[TrigramFrequencies | None] = [None]
            choices += [_forcing(q, w) for w in dict.fromkeys(_all_windows(q.lower()))]
            for trigrams in choices:
                statement = search_statements(caps, user, page, 1_000, trigrams)[0]
                result = await search_assets(pool, caps, user, page, 1_000, None, trigrams)
                assert statement.args[1] == trigram_patterns(q, trigrams)
                assert [str(a.id) for a in result.assets] == expected, (q, statement.args[1])
                assert (result.total, result.total_is_exact) == (len(expected), True)
            assert len(choices) > 3
    finally:
        await pool.close()
