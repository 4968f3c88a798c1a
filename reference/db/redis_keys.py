"""Deleting many Redis keys: in chunks, with ``UNLINK`` (freed off the server's main thread)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import redis

CHUNK: Final = 10_000


def unlink_all(client: redis.Redis, keys: Iterable[bytes | str]) -> None:
    batch: list[bytes | str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == CHUNK:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def unlink_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's, a measurement's) in the Redis at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        unlink_all(client, list(client.scan_iter(match=f"{prefix}*", count=CHUNK)))
    finally:
        client.close()
