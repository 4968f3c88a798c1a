"""Read the service's Prometheus text: the signed-URL cache counters, overall and per level
(``l1``: each worker's own cache; ``l2``: Redis, shared by the workers, asked for L1's misses)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

HITS = "url_cache_hits"
MISSES = "url_cache_misses"
LEVEL_HITS = "url_cache_level_hits"
LEVEL_MISSES = "url_cache_level_misses"


@dataclass(frozen=True)
class UrlCacheCounters:
    hits: float = 0.0
    misses: float = 0.0
    levels: dict[str, UrlCacheCounters] = field(default_factory=dict, compare=False)

    def __sub__(self, earlier: UrlCacheCounters) -> UrlCacheCounters:
        levels = {
            name: level - earlier.levels.get(name, UrlCacheCounters())
            for name, level in self.levels.items()
        }
        return UrlCacheCounters(self.hits - earlier.hits, self.misses - earlier.misses, levels)

    @property
    def lookups(self) -> float:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups > 0 else None


def parse_url_cache(text: str) -> UrlCacheCounters:
    """Sum of ``url_cache_hits_total`` and ``url_cache_misses_total`` over every label set."""
    totals = {HITS: 0.0, MISSES: 0.0}
    levels: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != f"{family.name}_total":
                continue
            if family.name in totals:
                totals[family.name] += sample.value
            elif family.name in (LEVEL_HITS, LEVEL_MISSES):
                level = levels.setdefault(sample.labels.get("level", ""), {})
                level[family.name] = level.get(family.name, 0.0) + sample.value
    return UrlCacheCounters(
        totals[HITS],
        totals[MISSES],
        {
            n: UrlCacheCounters(v.get(LEVEL_HITS, 0.0), v.get(LEVEL_MISSES, 0.0))
            for n, v in levels.items()
        },
    )


def fetch_url_cache(base_url: str, timeout: float = 10.0) -> UrlCacheCounters:
    url = base_url.rstrip("/") + "/metrics"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked)
        return parse_url_cache(response.read().decode("utf-8"))
