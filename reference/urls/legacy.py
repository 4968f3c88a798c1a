"""The legacy baseline (``URL_MODE=legacy``): the scattered pre-plan way of getting asset URLs.

A model of what the browser did with supabase-js before the plan, moved server-side so that it
runs on the same data, the same storage and the same HTTP stack as the unified service:

* **One signing round trip per asset**: ``createSignedUrl`` per object, an HTTP POST to the
  storage sign route with the user's access token (over loopback here, to Supabase Storage
  there). Requests run concurrently, as ``Promise.all`` ran them; nothing is batched.
* **Bucket detection with fallbacks**: each component guessed the bucket its own way (the
  plan's "inconsistent bucket detection logic"): metadata flags and quality, with no notion of
  the enhanced or video buckets. A wrong guess answers "not found" and the next bucket is tried
  (the plan's "redundant fallback mechanisms"), so a wrong guess costs extra round trips.
* **The plan's cache**: a ``Map`` keyed by path holding ``{url, expires}``, checked against
  ``expires`` and never evicted. Storage hands out ``exp = now + expiresIn``, so every signing
  gives a new URL, and browser caches miss whenever a URL was re-signed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Final
from uuid import UUID

import aiohttp

from reference.assets import Asset, ContentType, Quality
from reference.settings import Settings, UrlMode
from reference.urls.service import Clock, UrlService
from reference.web.auth import issue_token
from reference.web.metrics import Metrics

#: supabase-js callers passed an hour, as most of the app's code did.
EXPIRES_IN_S: Final = 3600


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def guessed_buckets(asset: Asset) -> list[str]:
    """Buckets to probe in order: the old guess first, then every fallback of that type."""
    speed = "high" if asset.quality == Quality.HIGH else "fast"
    other = "fast" if speed == "high" else "high"
    if asset.type == ContentType.VIDEO:
        order = [f"video_{speed}", f"video7b_{speed}_enhanced", f"video_{other}"]
        order.append(f"video7b_{other}_enhanced")
        return order
    meta = asset.metadata
    sdxl_first = _truthy(meta.get("is_sdxl")) or str(meta.get("model_type", "")).lower() == "sdxl"
    first = [f"sdxl_image_{speed}", f"image_{speed}"]
    if not sdxl_first:
        first.reverse()
    return [
        *first,
        f"image7b_{speed}_enhanced",
        f"image_{other}",
        f"sdxl_image_{other}",
        f"image7b_{other}_enhanced",
    ]


class LegacyUrlService(UrlService):
    mode = UrlMode.LEGACY

    def __init__(self, settings: Settings, metrics: Metrics, clock: Clock = time.time) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.base_url = (settings.storage_remote_url or settings.public_url).rstrip("/")
        self._cache: dict[str, tuple[str, float]] = {}
        self._tokens: dict[UUID, str] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    def _access_token(self, user_id: UUID) -> str:
        token = self._tokens.get(user_id)
        if token is None:
            token = issue_token(self.settings.jwt_secret, user_id)
            self._tokens[user_id] = token
        return token

    async def _create_signed_url(self, bucket: str, path: str, user_id: UUID) -> str | None:
        self.metrics.sign_calls.labels(self.mode.value, "single").inc()
        url = f"{self.base_url}/storage/v1/object/sign/{bucket}/{path}"
        headers = {"Authorization": f"Bearer {self._access_token(user_id)}"}
        async with self._client().post(
            url, json={"expiresIn": EXPIRES_IN_S}, headers=headers
        ) as response:
            if response.status != 200:
                await response.read()
                return None
            body = await response.json()
        self.metrics.urls_signed.labels(self.mode.value, bucket).inc()
        return f"{self.base_url}/storage/v1{body['signedURL']}"

    async def _url(self, asset: Asset, path: str) -> str | None:
        now = self.clock()
        cached = self._cache.get(path)
        if cached is not None and cached[1] > now:
            self.metrics.url_cache_hits.labels(self.mode.value).inc()
            return cached[0]
        self.metrics.url_cache_misses.labels(self.mode.value).inc()
        for bucket in guessed_buckets(asset):
            try:
                url = await self._create_signed_url(bucket, path, asset.user_id)
            except aiohttp.ClientError:
                url = None
            if url is not None:
                self._cache[path] = (url, now + EXPIRES_IN_S)
                self.metrics.url_cache_size.labels(self.mode.value).set(len(self._cache))
                return url
        return None

    async def thumbnail_urls(self, assets: Sequence[Asset]) -> list[str | None]:
        return list(await asyncio.gather(*(self._url(a, a.thumbnail_path) for a in assets)))

    async def high_res_urls(self, assets: Sequence[Asset]) -> list[str | None]:
        return list(await asyncio.gather(*(self._url(a, a.storage_path) for a in assets)))

    def clear_cache(self) -> None:
        self._cache.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
