"""Read the service's Prometheus text: the signed-URL cache counters, overall and per level
(``l1``: each worker's own cache; ``l2``: Redis, shared by the workers, asked for L1's misses);
and its latency histogram per route, beside the load generator's percentiles."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from reports.uncertainty import Estimate, get, proportion_ci

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

    @property
    def hit_rate_ci(self) -> Estimate | None:
        return proportion_ci(round(self.hits), round(self.lookups))


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


def fetch_metrics(base_url: str, timeout: float = 10.0) -> str:
    """The service's ``/metrics`` text."""
    url = base_url.rstrip("/") + "/metrics"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked)
        return str(response.read().decode("utf-8"))


def fetch_url_cache(base_url: str, timeout: float = 10.0) -> UrlCacheCounters:
    return parse_url_cache(fetch_metrics(base_url, timeout))


# --- the service's own latency histogram, beside the load generator's percentiles ------------

LATENCY: Final = "http_request_duration_seconds"
#: Load-test groups and the service route each one times (method, route label).
GROUP_ROUTES: Final[Mapping[str, tuple[str, str]]] = {
    "workspace_page": ("GET", "/v1/workspace"),
    "search": ("GET", "/v1/search"),
    "asset_high_res": ("GET", "/v1/assets/{asset_id}"),
    "suggestions": ("GET", "/v1/organize/suggestions"),
}
#: The client measures the server's time plus the loopback and its own queuing: more than 20%
#: beyond the service's bucket (or below it, which no client can be) is a disagreement.
AGREEMENT: Final = 0.20


def route_buckets(text: str) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Cumulative ``(upper bound s, count)`` buckets per (method, route), all statuses summed."""
    summed: dict[tuple[str, str], dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != LATENCY:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            key = (sample.labels.get("method", ""), sample.labels.get("route", ""))
            bound = float(sample.labels["le"])
            bucket = summed.setdefault(key, {})
            bucket[bound] = bucket.get(bound, 0.0) + sample.value
    return {k: sorted(v.items()) for k, v in summed.items()}


def subtract(
    after: Mapping[tuple[str, str], list[tuple[float, float]]],
    before: Mapping[tuple[str, str], list[tuple[float, float]]],
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The buckets of what happened between two scrapes."""
    found = {}
    for key, buckets in after.items():
        earlier = dict(before.get(key, []))
        found[key] = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
    return found


def bucket_of_quantile(
    buckets: Sequence[tuple[float, float]], quantile: float
) -> tuple[float, float] | None:
    """The (lower, upper) bounds in ms of the bucket that holds the ``quantile``."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = quantile * total
    lower = 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            upper = bound if math.isfinite(bound) else lower * 2 or 1.0
            return lower * 1000, upper * 1000
        lower = bound
    return None


def disagreements(
    client_p95_ms: Mapping[str, float],
    buckets: Mapping[tuple[str, str], Sequence[tuple[float, float]]],
) -> dict[str, dict[str, Any]]:
    """Per load group: the client's p95, the service's p95 bucket, and whether they disagree."""
    found = {}
    for group, route in GROUP_ROUTES.items():
        client = client_p95_ms.get(group)
        bucket = bucket_of_quantile(buckets.get(route, []), 0.95)
        if client is None or bucket is None:
            continue
        low, high = bucket
        disagree = client > high * (1 + AGREEMENT) or client < low * (1 - AGREEMENT)
        found[group] = {
            "client_p95_ms": client,
            "service_p95_bucket_ms": [low, high],
            "disagree": disagree,
        }
    return found


def compare_with_service(
    figures: Mapping[str, float], prefix: str, after: str, before: str | None = None
) -> dict[str, dict[str, Any]]:
    """The load run's p95 per group (``<prefix>.<group>.p95_ms``) against the service's own
    histogram between two scrapes of ``/metrics`` (``before`` None: since the service started).

    Each row also carries the client's 95% interval and n; ``sure`` says whether that whole
    interval is beyond the agreement band (a p95 of four requests is the slowest of them: a
    disagreement it shows may be chance)."""
    estimates = {
        group: estimate
        for group in GROUP_ROUTES
        if (estimate := get(figures, f"{prefix}.{group}.p95_ms")) is not None
    }
    window = route_buckets(after)
    if before is not None:
        window = subtract(window, route_buckets(before))
    found = disagreements({g: e.value for g, e in estimates.items()}, window)
    for group, row in found.items():
        estimate = estimates[group]
        low, high = row["service_p95_bucket_ms"]
        beyond = estimate.low > high * (1 + AGREEMENT) or estimate.high < low * (1 - AGREEMENT)
        row["client_p95_interval_ms"] = [estimate.low, estimate.high]
        row["n"] = estimate.n
        row["sure"] = bool(row["disagree"] and beyond)
    return found


def disagreement_lines(found: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per group whose client and service p95 disagree, for the terminal."""
    lines = []
    for group, row in found.items():
        if not row.get("disagree"):
            continue
        low, high = row["service_p95_bucket_ms"]
        unsure = ""
        if not row.get("sure", True):
            c_low, c_high = row.get("client_p95_interval_ms") or (math.nan, math.nan)
            unsure = (
                f"; not sure: n = {row.get('n')}, Locust's 95% interval "
                f"[{c_low:.1f}, {c_high:.1f}] ms reaches the band"
            )
        lines.append(
            f"{group}: Locust p95 {row['client_p95_ms']:.1f} ms, the service's p95 in "
            f"({low:g}, {high:g}] ms (more than {AGREEMENT:.0%} apart{unsure})"
        )
    return lines
