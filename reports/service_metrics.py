"""Read the service's Prometheus text: the signed-URL cache counters."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from reports.uncertainty import Estimate, proportion_ci

HITS = "url_cache_hits"
MISSES = "url_cache_misses"


@dataclass(frozen=True)
class UrlCacheCounters:
    hits: float = 0.0
    misses: float = 0.0

    def __sub__(self, earlier: UrlCacheCounters) -> UrlCacheCounters:
        return UrlCacheCounters(self.hits - earlier.hits, self.misses - earlier.misses)

    @property
    def lookups(self) -> float:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups > 0 else None

    @property
    def hit_rate_ci(self) -> Estimate | None:
        return proportion_ci(round(self.hits), round(self.lookups))


def parse_url_cache(text: str) -> UrlCacheCounters:
    """Sum of ``url_cache_hits_total`` and ``url_cache_misses_total`` over every label set."""
    totals = {HITS: 0.0, MISSES: 0.0}
    for family in text_string_to_metric_families(text):
        if family.name not in totals:
            continue
        for sample in family.samples:
            if sample.name == f"{family.name}_total":
                totals[family.name] += sample.value
    return UrlCacheCounters(totals[HITS], totals[MISSES])


def fetch_url_cache(base_url: str, timeout: float = 10.0) -> UrlCacheCounters:
    url = base_url.rstrip("/") + "/metrics"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked)
        return parse_url_cache(response.read().decode("utf-8"))
