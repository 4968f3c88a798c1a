"""The signed-URL cache level the workers share: Redis, behind each process's own TTL+LRU.

An entry is keyed by ``(bucket, path, window end)`` and expires in Redis at that window end: a URL
signed in one window is the same bytes in every worker, so any worker may hand out what another
signed, and nobody sees it after its window (the next window's key is another key). Redis is a
cache, never a dependency: an error or a slow answer counts as a miss, logs one warning per outage,
and the level stays off for ``retry_after_s`` so requests do not wait on a dead server each time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: A connection or command that takes longer than this is an outage, not a cache hit.
REDIS_TIMEOUT_S: Final = 0.25
RETRY_AFTER_S: Final = 5.0


def window_end(now: float, window_s: int) -> int:
    """The end of the signing window that ``now`` falls in."""
    return (int(now // window_s) + 1) * window_s


@dataclass(frozen=True, slots=True)
class SharedEntry:
    bucket: str
    path: str
    url: str
    expires_at: int


class SharedUrlCache(Protocol):
    """A cache level shared by processes, consulted for what the per-process cache missed."""

    level: str
    #: Failed calls so far (each one answered as misses).
    errors: int

    async def get_many(
        self, objects: Sequence[tuple[str, str]], window_end: int
    ) -> list[SharedEntry | None]: ...

    async def put_many(self, entries: Sequence[SharedEntry], window_end: int) -> None: ...

    async def close(self) -> None: ...


def open_redis(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )


class RedisUrlCache:
    """:class:`SharedUrlCache` on Redis: one ``MGET`` per lookup, one pipeline per store."""

    level = "l2"

    def __init__(
        self,
        client: Redis,
        prefix: str,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = f"{prefix}url:"
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.errors = 0
        self._down_until: float | None = None

    def key(self, bucket: str, path: str, window_end: int) -> str:
        return f"{self.prefix}{window_end}:{bucket}/{path}"

    @property
    def available(self) -> bool:
        return self._down_until is None or self.clock() >= self._down_until

    async def get_many(
        self, objects: Sequence[tuple[str, str]], window_end: int
    ) -> list[SharedEntry | None]:
        if not objects or not self.available:
            return [None] * len(objects)
        try:
            values = await self.client.mget([self.key(b, p, window_end) for b, p in objects])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return [None] * len(objects)
        self._recovered()
        return [
            None if raw is None else _decode(bucket, path, raw)
            for (bucket, path), raw in zip(objects, values, strict=True)
        ]

    async def put_many(self, entries: Sequence[SharedEntry], window_end: int) -> None:
        if not entries or not self.available:
            return
        pipe = self.client.pipeline(transaction=False)
        for e in entries:
            value = f"{e.expires_at} {e.url}"
            pipe.set(self.key(e.bucket, e.path, window_end), value, exat=window_end)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
        else:
            self._recovered()

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self._down_until is None:
            log.warning(
                "redis unavailable (%s): URL cache on L1 only, retrying every %.0f s",
                exc, self.retry_after_s,
            )  # fmt: skip
        self._down_until = self.clock() + self.retry_after_s

    def _recovered(self) -> None:
        if self._down_until is not None:
            log.warning("redis reachable again: URL cache L2 back")
            self._down_until = None

    async def close(self) -> None:
        await self.client.aclose()


def _decode(bucket: str, path: str, raw: bytes | str) -> SharedEntry | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    expires, _, url = text.partition(" ")
    if not url or not expires.isdigit():
        return None
    return SharedEntry(bucket, path, url, int(expires))
