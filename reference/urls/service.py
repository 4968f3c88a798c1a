"""The unified URL service: one bucket rule, windowed signed URLs, a bounded cache, batch signing.

The plan's ``UnifiedUrlService`` done right. Signed URLs have Supabase Storage's shape
(``/storage/v1/object/sign/{bucket}/{path}?token=JWT``, HS256 ``{url, iat, exp}``). Both ``iat``
and ``exp`` derive from a fixed window, not from the current time, so one object has one URL
for the whole window and browser and CDN caches hit: the same URL in every process and after
a restart, since the signature depends only on the key, the object and the window. A cached URL
is served only within the window it was signed for (an earlier window's is a miss), so every
URL handed out lives at least one more window. The cache is a TTL+LRU bound (the plan's ``Map``
never evicts).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp
import jwt
from aiohttp import web

from reference.assets import Asset
from reference.settings import Settings, UrlMode
from reference.urls.buckets import BUCKETS, UnsafePath, determine_bucket, safe_object_path
from reference.urls.cache import RedisUrlCache, SharedEntry, SharedUrlCache, open_redis, window_end
from reference.web.metrics import Children, Metrics

ALGORITHM: Final = "HS256"
SIGN_PREFIX: Final = "/storage/v1/object/sign"
log = logging.getLogger(__name__)
Clock = Callable[[], float]


class SigningFailed(Exception):
    """An object could not be signed (bad path, unknown bucket, missing object, remote error)."""


@dataclass(frozen=True, slots=True)
class SignResult:
    """One item of a batch: a URL, or the reason there is none (the batch itself succeeds)."""

    bucket: str
    path: str
    url: str | None
    expires_at: int
    error: str | None = None


def signed_path(bucket: str, path: str, token: str) -> str:
    """``/object/sign/...?token=``: the relative form Supabase's sign routes return."""
    return f"/object/sign/{bucket}/{quote(path)}?token={token}"


def sign_token(key: str, bucket: str, path: str, issued_at: int, expires_at: int) -> str:
    claims = {"url": f"{bucket}/{path}", "iat": issued_at, "exp": expires_at}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def window_bounds(now: float, window_s: int) -> tuple[int, int]:
    """``(iat, exp)`` for a URL signed at ``now``: the window's start, and the end of the next one.

    Every signature within one window is byte-identical, and a URL lives between one and two
    windows, so a client never holds a URL that expires within the window it was handed out.
    """
    start = int(now // window_s) * window_s
    return start, start + 2 * window_s


def validate_object(bucket: str, path: str) -> None:
    if bucket not in BUCKETS:
        raise SigningFailed(f"unknown bucket {bucket!r}")
    try:
        safe_object_path(path)
    except UnsafePath:
        raise SigningFailed(f"invalid object path {path!r}") from None


class Signer(Protocol):
    async def sign_batch(self, bucket: str, paths: Sequence[str]) -> list[SignResult]: ...

    async def close(self) -> None: ...


class LocalSigner:
    """In-process signing: the service holds the storage key (about 16 us per URL)."""

    def __init__(self, key: str, base_url: str, window_s: int, clock: Clock) -> None:
        self.key = key
        self.base_url = base_url.rstrip("/") + "/storage/v1"
        self.window_s = window_s
        self.clock = clock

    async def sign_batch(self, bucket: str, paths: Sequence[str]) -> list[SignResult]:
        issued_at, expires_at = window_bounds(self.clock(), self.window_s)
        results: list[SignResult] = []
        for path in paths:
            try:
                validate_object(bucket, path)
            except SigningFailed as exc:
                results.append(SignResult(bucket, path, None, 0, str(exc)))
                continue
            token = sign_token(self.key, bucket, path, issued_at, expires_at)
            url = self.base_url + signed_path(bucket, path, token)
            results.append(SignResult(bucket, path, url, expires_at))
        return results

    async def close(self) -> None:
        return None


class RemoteSigner:
    """A Supabase Storage's batch sign endpoint: one POST per bucket, per-item errors kept.

    ``expiresIn`` is chosen so the remote expiry lands on the window boundary too (to within
    the request's latency), which keeps the cache's re-sign logic the same for both signers.
    """

    def __init__(self, base_url: str, key: str, window_s: int, clock: Clock) -> None:
        self.base_url = base_url.rstrip("/") + "/storage/v1"
        self.key = key
        self.window_s = window_s
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.key}", "apikey": self.key},
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def sign_batch(self, bucket: str, paths: Sequence[str]) -> list[SignResult]:
        now = self.clock()
        _, expires_at = window_bounds(now, self.window_s)
        valid: list[str] = []
        errors: dict[str, str] = {}
        for path in paths:
            try:
                validate_object(bucket, path)
                valid.append(path)
            except SigningFailed as exc:
                errors[path] = str(exc)
        answers: dict[str, dict[str, Any]] = {}
        if valid:
            body = {"expiresIn": max(1, expires_at - int(now)), "paths": valid}
            url = f"{self.base_url}/object/sign/{bucket}"
            try:
                async with self._client().post(url, json=body) as response:
                    payload = await response.json(content_type=None)
                    if response.status != 200 or not isinstance(payload, list):
                        raise SigningFailed(f"remote sign failed: HTTP {response.status}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise SigningFailed(f"remote sign failed: {exc!r}") from None
            answers = {str(item.get("path")): item for item in payload if isinstance(item, dict)}
        results: list[SignResult] = []
        for path in paths:
            item = answers.get(path)
            if path in errors or item is None or not item.get("signedURL"):
                reason = errors.get(path) or str((item or {}).get("error") or "not signed")
                results.append(SignResult(bucket, path, None, 0, reason))
            else:
                signed = str(item["signedURL"])
                url = signed if signed.startswith("http") else self.base_url + signed
                results.append(SignResult(bucket, path, url, expires_at))
        return results

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class UrlCache:
    """Bounded TTL+LRU map of ``(bucket, path)`` to a signed URL and its expiry."""

    def __init__(self, size: int, resign_margin_s: int) -> None:
        self.size = size
        self.margin = resign_margin_s
        self._entries: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str], now: float, *, expires_at: int | None = None) -> str | None:
        """The cached URL; a miss when close to expiry, or, given ``expires_at``, when the
        entry was signed for another expiry (another window)."""
        entry = self._entries.get(key)
        if (
            entry is None
            or entry[1] - now < self.margin
            or (expires_at is not None and entry[1] != expires_at)
        ):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def get_many(
        self, keys: Sequence[tuple[str, str]], now: float, expires_at: int
    ) -> list[str | None]:
        """:meth:`get` for a whole page in one pass (no call per key)."""
        entries, margin = self._entries, self.margin
        found: list[str | None] = []
        for key in keys:
            entry = entries.get(key)
            if entry is None or entry[1] != expires_at or entry[1] - now < margin:
                found.append(None)
            else:
                entries.move_to_end(key)
                found.append(entry[0])
        hits = len(found) - found.count(None)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def put(self, key: tuple[str, str], url: str, expires_at: int) -> int:
        """Store; return how many entries the size bound evicted."""
        self._entries[key] = (url, expires_at)
        self._entries.move_to_end(key)
        evicted = 0
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            evicted += 1
        self.evictions += evicted
        return evicted

    def clear(self) -> None:
        self._entries.clear()


class UrlService(abc.ABC):
    """What every feature calls to put asset URLs in its answers (unified or legacy)."""

    mode: UrlMode

    @abc.abstractmethod
    async def thumbnail_urls(self, assets: Sequence[Asset]) -> list[str | None]: ...

    @abc.abstractmethod
    async def high_res_urls(self, assets: Sequence[Asset]) -> list[str | None]: ...

    async def high_res_url(self, asset: Asset) -> str:
        (url,) = await self.high_res_urls([asset])
        if url is None:
            raise SigningFailed(f"no URL for asset {asset.id}")
        return url

    @abc.abstractmethod
    def clear_cache(self) -> None:
        """Forget every cached URL (benchmarks use it to measure a first visit)."""

    async def close(self) -> None:
        return None


@functools.lru_cache(maxsize=1024)
def _plain_bucket(content_type: str, quality: str, model_type: str | None) -> str:
    """``determine_bucket`` without metadata, remembered: the type, quality and model columns
    take a handful of values, and a page asks 50 times."""
    return determine_bucket(content_type, quality, model_type, None)


def asset_bucket(asset: Asset) -> str:
    meta = asset.metadata
    if "is_sdxl" in meta or "enhanced" in meta or "model_type" in meta:
        return determine_bucket(asset.type, asset.quality, asset.model_type, meta)
    return _plain_bucket(asset.type, asset.quality, asset.model_type)


class UnifiedUrlService(UrlService):
    mode = UrlMode.UNIFIED

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        signer: Signer,
        clock: Clock = time.time,
        shared: SharedUrlCache | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.signer = signer
        self.clock = clock
        self.cache = UrlCache(settings.url_cache_size, settings.url_resign_margin_s)
        #: The level the workers share (L2), asked for what this process's cache missed.
        self.shared = shared
        self._label = self.mode.value
        # The counters every page counts on, found once (see Children).
        self._hits = metrics.url_cache_hits.labels(self._label)
        self._misses = metrics.url_cache_misses.labels(self._label)
        self._level_hits = Children(metrics.url_cache_level_hits)
        self._level_misses = Children(metrics.url_cache_level_misses)

    async def sign_objects(self, objects: Sequence[tuple[str, str]]) -> list[SignResult]:
        """Signed URLs for ``(bucket, path)`` pairs, in order: cache first, then one signing
        call per bucket for the misses. A failed item (or bucket) does not fail the others."""
        now = self.clock()
        return await self._complete(objects, self._cached(objects, now), now)

    def _cached(self, objects: Sequence[tuple[str, str]], now: float) -> list[str | None]:
        _, window_expiry = window_bounds(now, self.settings.url_window_s)
        return self.cache.get_many(objects, now, window_expiry)

    async def object_urls(self, objects: Sequence[tuple[str, str]]) -> list[str | None]:
        """:meth:`sign_objects`' URLs alone (None where signing failed). A page whose every
        object is in this process's cache is answered from the lookup, with no result object
        per URL (they cost a warm page more than the lookups)."""
        now = self.clock()
        cached = self._cached(objects, now)
        if None not in cached:
            # Nothing was stored: the cache's size gauge, set by the last call that stored,
            # still holds.
            self._count(len(objects), 0, 0)
            return cached
        return [r.url for r in await self._complete(objects, cached, now)]

    def _count(self, total: int, l1_misses: int, unsigned: int) -> None:
        """A call's metrics: of ``total`` objects, ``l1_misses`` not in this process's cache
        and ``unsigned`` in no cache level (signed, or failed, now)."""
        self._count_level("l1", total - l1_misses, l1_misses)
        self._hits.inc(total - unsigned)
        self._misses.inc(unsigned)

    async def _complete(
        self, objects: Sequence[tuple[str, str]], cached: Sequence[str | None], now: float
    ) -> list[SignResult]:
        results: list[SignResult | None] = [None] * len(objects)
        missing: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, ((bucket, path), url) in enumerate(zip(objects, cached, strict=True)):
            if url is None:
                missing[bucket][path].append(index)
            else:
                results[index] = SignResult(bucket, path, url, 0)
        l1_misses = sum(len(by_path) for by_path in missing.values())
        if missing and self.shared is not None:
            await self._from_shared(self.shared, missing, results, now)
        unsigned = sum(len(v) for by_path in missing.values() for v in by_path.values())
        self._count(len(objects), l1_misses, unsigned)
        if missing:
            batches = await asyncio.gather(
                *(self._sign_bucket(bucket, list(by_path)) for bucket, by_path in missing.items())
            )
            signed: list[SharedEntry] = []
            for bucket_results in batches:
                for result in bucket_results:
                    for index in missing[result.bucket][result.path]:
                        results[index] = result
                    if result.url is not None:
                        signed.append(
                            SharedEntry(result.bucket, result.path, result.url, result.expires_at)
                        )
            if self.shared is not None:
                await self.shared.put_many(signed, window_end(now, self.settings.url_window_s))
        self.metrics.url_cache_size.labels(self._label).set(len(self.cache))
        return [r for r in results if r is not None]

    async def _from_shared(
        self,
        shared: SharedUrlCache,
        missing: dict[str, dict[str, list[int]]],
        results: list[SignResult | None],
        now: float,
    ) -> None:
        """Fill what the shared level holds for this window; what it holds leaves ``missing``."""
        objects = [(bucket, path) for bucket, by_path in missing.items() for path in by_path]
        errors = shared.errors
        found = await shared.get_many(objects, window_end(now, self.settings.url_window_s))
        self.metrics.url_cache_errors.labels(self._label, shared.level).inc(shared.errors - errors)
        hits = 0
        for entry in found:
            if entry is None:
                continue
            hits += 1
            self.cache.put((entry.bucket, entry.path), entry.url, entry.expires_at)
            for index in missing[entry.bucket].pop(entry.path):
                results[index] = SignResult(entry.bucket, entry.path, entry.url, entry.expires_at)
        for bucket in [b for b, by_path in missing.items() if not by_path]:
            del missing[bucket]
        self._count_level(shared.level, hits, len(objects) - hits)

    def _count_level(self, level: str, hits: int, misses: int) -> None:
        self._level_hits(self._label, level).inc(hits)
        self._level_misses(self._label, level).inc(misses)

    async def _sign_bucket(self, bucket: str, paths: list[str]) -> list[SignResult]:
        self.metrics.sign_calls.labels(self._label, "batch").inc()
        try:
            signed = await self.signer.sign_batch(bucket, paths)
        except SigningFailed as exc:
            return [SignResult(bucket, path, None, 0, str(exc)) for path in paths]
        evicted = 0
        count = 0
        for result in signed:
            if result.url is not None:
                evicted += self.cache.put((bucket, result.path), result.url, result.expires_at)
                count += 1
        self.metrics.urls_signed.labels(self._label, bucket).inc(count)
        self.metrics.url_cache_evictions.labels(self._label).inc(evicted)
        return signed

    async def thumbnail_urls(self, assets: Sequence[Asset]) -> list[str | None]:
        return await self.object_urls([(asset_bucket(a), a.thumbnail_path) for a in assets])

    async def high_res_urls(self, assets: Sequence[Asset]) -> list[str | None]:
        return await self.object_urls([(asset_bucket(a), a.storage_path) for a in assets])

    def clear_cache(self) -> None:
        self.cache.clear()

    async def close(self) -> None:
        await self.signer.close()
        if self.shared is not None:
            await self.shared.close()


URLS = web.AppKey("urls", UrlService)


def make_unified(settings: Settings, metrics: Metrics, clock: Clock = time.time) -> UrlService:
    signer: Signer
    if settings.storage_remote_url:
        key = settings.storage_remote_key or settings.service_role_key
        signer = RemoteSigner(settings.storage_remote_url, key, settings.url_window_s, clock)
    else:
        signer = LocalSigner(
            settings.storage_key, settings.public_url, settings.url_window_s, clock
        )
    shared = None
    if settings.redis_url:
        shared = RedisUrlCache(open_redis(settings.redis_url), settings.redis_prefix)
    else:
        log.info("REDIS_URL is not set: the signed-URL cache is this process's alone (L1 only)")
    return UnifiedUrlService(settings, metrics, signer, clock, shared)
