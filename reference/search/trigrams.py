"""Which trigrams of a prompt query the trigram index looks up.

A GIN index answers ``prompt_fold like '%knight%'`` by reading the posting list of every trigram
of the pattern (``kni``, ``nig``, ``igh``, ``ght``) and intersecting them, before a row is read.
The lists of common trigrams grow with the history: at 1,000,000 assets ``igh`` and ``ght`` hold
about 500,000 rows each, ``kni`` 14,450, and the four together cost 7 ms where ``kni`` alone costs
1 to 4. Any substring of the query is a necessary condition of a match, so the index is asked for
the rarest trigram of each word of the query (at most :data:`MAX_WINDOWS`), and every candidate
is then tested against the whole query (``strpos``) as before. Which trigrams are chosen changes
what a search costs, never what it answers.

Rarity comes from a sample of the prompts (:func:`load_trigram_frequencies`, about
:data:`SAMPLE_ROWS` rows), taken when the service starts and again every
:data:`REFRESH_SECONDS`: a stale sample can only choose a less rare trigram.

The same sample says when a search will reach the count cap (:meth:`TrigramFrequencies.past_cap`):
its sampled rows of the user that match, over the share of the tables sampled. Such a search's
page comes from the walk of the sort index (the matches outnumber the cap, so no count of them
picks the page), and the service counts and walks at once rather than one after the other. Like
the choice of trigrams, the estimate changes what a search costs, never what it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Final
from uuid import UUID

import asyncpg

from reference.assets import Asset, ContentType
from reference.search.in_memory import DISMISSED_KEY, asset_filter
from reference.search.query import SearchQuery
from reference.search.sql import TRIGRAM_SAMPLE_PERCENT_SQL, TRIGRAM_SAMPLE_SQL
from reference.web.errors import dependency_failure

log = logging.getLogger(__name__)

#: Runs of ASCII letters and digits: a window of one is a trigram pg_trgm stores for every prompt
#: that contains it, and lowercases the same way under every collation's ASCII.
ASCII_RUN: Final = re.compile(r"[A-Za-z0-9]{3,}")
#: Trigrams looked up per query: the rarest of the rarest word, then of the next word while it is
#: itself rare (a second list narrows the candidates of a two-word query; a common one costs more
#: to intersect than it saves).
MAX_WINDOWS: Final = 2
SECOND_WINDOW_MAX_SHARE: Final = 0.10
SAMPLE_ROWS: Final = 3_000
REFRESH_SECONDS: Final = 600.0
#: A search is taken to reach the count cap when its estimated matches are at least this many
#: times the cap, from at least :data:`PAST_CAP_MIN_HITS` sampled rows (fewer say too little).
PAST_CAP_MARGIN: Final = 2.0
PAST_CAP_MIN_HITS: Final = 5
#: A user who owns at least this share of the sampled rows has the trigram index read without
#: the user id (:data:`reference.search.sql.OWNER_TESTS`). Measured on the heavy user's capped
#: count of ``knight``: at 91% (1,000,000 assets) half the time through the key; at 50% (the
#: plan's scale) the same for ``knight``, and a third more for needles whose candidates lie
#: mostly with other users (``dragon``); so the cut lies between the two.
OWNS_MOST_SHARE: Final = 0.75


#: One user's sampled rows, listed under each ASCII trigram of their prompts: assets with what a
#: search filters on (each prompt folded, no storage paths). A search tests only the rows that
#: hold its rarest trigram (at 1,000,000 assets, 2,700 sampled rows: looking for the needle in
#: all of them cost 0.4 ms a search).
UserSample = Mapping[str, Sequence[Asset]]


@dataclass(frozen=True, slots=True)
class TrigramFrequencies:
    """How many sampled prompts hold each trigram (lowercase ASCII), out of ``rows``; the sampled
    rows by user, and ``fraction``, the share of the asset tables sampled."""

    counts: Mapping[str, int] = field(default_factory=dict)
    rows: int = 0
    users: Mapping[UUID, UserSample] = field(default_factory=dict)
    fraction: float = 1.0
    #: Sampled rows by user (every row, with or without trigrams).
    owned: Mapping[UUID, int] = field(default_factory=dict)

    def owns_most(self, user: UUID) -> bool:
        """Whether ``user`` owns at least :data:`OWNS_MOST_SHARE` of the sampled rows."""
        return self.rows > 0 and self.owned.get(user, 0) >= OWNS_MOST_SHARE * self.rows

    def count(self, window: str) -> int:
        """Sampled prompts holding ``window``'s trigram (as written: looked up lowercased)."""
        return self.counts.get(window.lower(), 0)

    def windows(self, q: str) -> list[str] | None:
        """The substrings of ``q`` (three ASCII letters or digits each, as written) whose trigrams
        the index looks up, rarest first; None when ``q`` has no such run, or the sample is empty
        (not taken, or nothing to take): the whole pattern is looked up then, as pg_trgm extracts
        it."""
        if not self.rows:
            return None
        picks: list[tuple[int, int, str]] = []  # (count, word's place, window)
        for order, run in enumerate(ASCII_RUN.finditer(q)):
            text = run.group()
            rarest = min((text[i : i + 3] for i in range(len(text) - 2)), key=self.count)
            picks.append((self.count(rarest), order, rarest))
        if not picks:
            return None
        picks.sort()
        chosen = [picks[0][2]]
        for _count, _order, window in picks[1:MAX_WINDOWS]:
            if self.count(window) <= SECOND_WINDOW_MAX_SHARE * self.rows:
                chosen.append(window)
        return chosen

    def past_cap(self, user: UUID, search: SearchQuery, cap: int) -> bool:
        """Whether ``user``'s matches of ``search`` (a prompt query) are estimated at
        :data:`PAST_CAP_MARGIN` times ``cap`` or more: the user's sampled rows that match, over
        the share sampled. Only the rows that hold the query's rarest trigram can match (as for
        the index), and they alone are tested."""
        sample = self.users.get(user)
        windows = self.windows(search.q)
        if sample is None or windows is None:
            return False
        needed = max(PAST_CAP_MARGIN * cap * self.fraction, PAST_CAP_MIN_HITS)
        candidates = sample.get(windows[0].lower(), ())
        if len(candidates) < needed:
            return False
        keep = asset_filter(search)
        return sum(1 for asset in candidates if keep(asset)) >= needed


def _sampled_asset(r: asyncpg.Record) -> Asset:
    metadata = {} if r["dismissed"] is None else {DISMISSED_KEY: r["dismissed"]}
    return Asset(
        ContentType(r["type"]), r["id"], r["user_id"], None, r["prompt_fold"], r["status"],
        r["quality"], r["model_type"], "", "", None, metadata, r["created_at"],
    )  # fmt: skip


async def load_trigram_frequencies(
    conn: asyncpg.Connection, sample_rows: int = SAMPLE_ROWS
) -> TrigramFrequencies:
    """Trigram counts over about ``sample_rows`` rows of the asset tables, and those rows by
    user. Each row is kept at random (``tablesample bernoulli``): a job's assets lie together on
    a page, so a sample of whole pages (``system``) varied far more than its size says (at
    1,000,000 assets, 4 to 15 sampled rows of ``knight`` at high quality in five samples, where
    rows kept at random gave 8 to 19). Every row while the tables are smaller. The sample reads
    the tables through (at 1,000,000 assets about 0.4 s, in the background). Needs pg_trgm."""
    percent = float(await conn.fetchval(TRIGRAM_SAMPLE_PERCENT_SQL, float(sample_rows)))
    rows = await conn.fetch(TRIGRAM_SAMPLE_SQL, percent)
    # About 0.1 s of Python at 3,000 rows: in a thread, so the event loop keeps serving.
    return await asyncio.to_thread(_frequencies, rows, percent)


def _frequencies(rows: list[asyncpg.Record], percent: float) -> TrigramFrequencies:
    counts = Counter(chain.from_iterable(r["trigrams"] for r in rows))
    owned = Counter(r["user_id"] for r in rows)
    holding: dict[UUID, dict[str, list[Asset]]] = {}
    for r in rows:
        asset = _sampled_asset(r)
        mine = holding.setdefault(asset.user_id, {})
        for trigram in r["trigrams"]:
            mine.setdefault(trigram, []).append(asset)
    return TrigramFrequencies(dict(counts), len(rows), holding, percent / 100.0, dict(owned))


class TrigramStatistics:
    """The service's current :class:`TrigramFrequencies`, refreshed in the background."""

    def __init__(self, frequencies: TrigramFrequencies | None = None) -> None:
        self.current = frequencies if frequencies is not None else TrigramFrequencies()

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            self.current = await load_trigram_frequencies(conn)

    @contextlib.asynccontextmanager
    async def refreshing(
        self, pool: asyncpg.Pool, every: float = REFRESH_SECONDS
    ) -> AsyncIterator[None]:
        """Loads a sample now, then again every ``every`` seconds until the block ends. A failed
        load keeps the last sample (it only steers the choice of trigrams) and is logged, as the
        batch feature's trash worker logs its passes: a warning for a database down or too slow,
        the traceback for anything else."""

        async def load() -> None:
            try:
                await self.refresh(pool)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # as the trash worker: the next load may succeed
                failure = dependency_failure(exc)
                if failure is None:
                    log.exception("trigram sample not loaded; next in %ss", every)
                else:
                    log.warning("trigram sample not loaded (%s); next in %ss", failure, every)

        async def loop() -> None:
            while True:
                await asyncio.sleep(every)
                await load()

        await load()
        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
