"""A fixed, realistic set of workspace searches (query parameters of ``GET /v1/search``).

Deterministic for a given dataset spec and seed: words come from the generator's vocabulary,
dates are relative to the spec's reference time. The mix follows what a user does: mostly text
(whole words, words being typed, mixed case, a few characters, nothing found), then filters,
date ranges, the other sorts, and combinations.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Final

from fixtures.spec import DatasetSpec
from fixtures.vocabulary import ADJECTIVES, LIGHTING, MOODS, STYLES, SUBJECTS

DEFAULT_COUNT: Final = 120
QUERY_SEED: Final = 20_240_501
PAGE: Final = "50"

NO_MATCH: Final = ("unicorn spaceship", "zzyzx", "quantum lasagna", "mauve giraffe", "xq", "qqq")
SHORT: Final = ("a", "8k", "ow", "re", "x", "f/", "Th", "ai")
TYPES: Final = ("image", "video")
QUALITIES: Final = ("fast", "high")
MODELS: Final = ("SDXL", "WAN", "Enhanced", "none")
STATUSES: Final = ("completed", "generating", "failed")
SORTS: Final = ("prompt", "quality", "model", "date")
ORDERS: Final = ("asc", "desc")


def search_queries(
    spec: DatasetSpec, count: int = DEFAULT_COUNT, seed: int = QUERY_SEED
) -> list[dict[str, str]]:
    rng = random.Random(seed)
    now = spec.resolved().reference_now
    words = [*SUBJECTS, *ADJECTIVES, *LIGHTING, *STYLES, *MOODS]

    def word() -> str:
        return rng.choice(words)

    def typed() -> str:
        w = rng.choice([s for s in words if len(s) >= 6])
        return w[: rng.randint(3, len(w) - 1)]

    def cased() -> str:
        w = word()
        return rng.choice([w.upper(), w.title(), w.lower()])

    def days_back(days: float) -> str:
        return (now - timedelta(days=days)).date().isoformat()

    def date_range() -> dict[str, str]:
        kind = rng.randrange(4)
        if kind == 0:
            return {"start": days_back(7)}
        if kind == 1:
            return {"start": days_back(30)}
        if kind == 2:
            start = rng.uniform(30, 180)
            return {"start": days_back(start), "end": days_back(start - 30)}
        return {"end": days_back(rng.uniform(60, 120))}

    def one_filter() -> dict[str, str]:
        name, values = rng.choice(
            [("type", TYPES), ("quality", QUALITIES), ("model", MODELS), ("status", STATUSES)]
        )
        return {name: rng.choice(values)}

    def sort() -> dict[str, str]:
        return {"sort": rng.choice(SORTS), "order": rng.choice(ORDERS)}

    makers = [
        (30, lambda: {"q": word()}),
        (10, lambda: {"q": typed()}),
        (6, lambda: {"q": cased()}),
        (8, lambda: {"q": rng.choice(SHORT)}),
        (6, lambda: {"q": rng.choice(NO_MATCH)}),
        (18, one_filter),
        (4, lambda: {**one_filter(), **one_filter()}),
        (10, date_range),
        (12, sort),
        (8, lambda: {"q": word(), **sort()}),
        (8, lambda: {"q": word(), **one_filter(), **date_range()}),
    ]
    base = [maker for weight, maker in makers for _ in range(weight)]
    chosen = [base[i % len(base)] for i in range(count)]
    rng.shuffle(chosen)
    return [{**make(), "limit": PAGE} for make in chosen]
