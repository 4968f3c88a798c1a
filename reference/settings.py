"""Service settings, read from the environment once, with safe local defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

#: Development defaults. They are public on purpose: a deployment sets its own through the
#: environment, and the service says so at start when it runs on a default.
DEV_JWT_SECRET: Final = "workspace-bench-dev-jwt-secret-not-for-production"
DEV_STORAGE_KEY: Final = "workspace-bench-dev-storage-key-not-for-production"


class UrlMode(StrEnum):
    UNIFIED = "unified"
    LEGACY = "legacy"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value}: must be at least {minimum}")
    return value


def _unit_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if not 0.0 < value <= 1.0:
        raise SettingsError(f"{name}={value}: must be within (0, 1]")
    return value


def _words(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(word.strip().lower() for word in raw.split(",") if word.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_secret: str = DEV_JWT_SECRET
    storage_key: str = DEV_STORAGE_KEY
    storage_dir: Path = Path(".data/storage")
    public_url: str = "http://127.0.0.1:8080"
    url_mode: UrlMode = UrlMode.UNIFIED
    #: Signed URLs expire at the end of a fixed window, so the same object has the same URL
    #: for the whole window and browser and CDN caches hit.
    url_window_s: int = 3600
    url_cache_size: int = 50_000
    #: Re-sign when less than this much of a URL's life is left.
    url_resign_margin_s: int = 300
    #: Remote Supabase Storage to sign with instead of in-process (empty: sign here).
    storage_remote_url: str = ""
    storage_remote_key: str = ""
    page_size_default: int = 50
    page_size_max: int = 200
    pool_min_size: int = 2
    pool_max_size: int = 20
    batch_max_ids: int = 10_000
    # search (issue 4)
    #: Text searches count their matches exactly up to this many, then report "at least".
    search_count_cap: int = 10_000
    # batch operations (issue 5)
    #: Operations on more assets than this run in the background, in chunks, with progress.
    batch_inline_max: int = 1_000
    batch_chunk_size: int = 1_000
    trash_retention_s: int = 30 * 86_400
    purge_interval_s: int = 60
    purge_retry_base_s: int = 30
    purge_retry_max_s: int = 3_600
    download_max_bytes: int = 4 * 1024**3
    # --- organize (issue 6) ---
    #: Jaccard similarity of word-pair shingles at or above which two prompts are duplicates.
    organize_threshold: float = 0.8
    #: The plan's theme vocabulary for tag suggestions (``ORGANIZE_THEMES``, comma-separated).
    organize_themes: tuple[str, ...] = (
        "portrait", "landscape", "product", "artistic", "commercial",
    )  # fmt: skip
    #: Users whose LSH index one process keeps in memory.
    organize_cache_users: int = 16
    # --- scale-out (issue 18) ---
    #: Service processes behind one port (``python -m reference``, ``make serve``).
    workers: int = 1
    #: Redis shared by the workers (URL cache L2, LSH index); empty: per-process only.
    redis_url: str = ""
    #: Prefix of every Redis key the service writes (several services may share one Redis).
    redis_prefix: str = "wsb:"

    @property
    def jwt_secret_is_default(self) -> bool:
        return self.jwt_secret == DEV_JWT_SECRET

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        port = _int(env, "PORT", defaults.port, 0)
        host = env.get("HOST", defaults.host)
        mode_raw = env.get("URL_MODE", defaults.url_mode.value)
        try:
            url_mode = UrlMode(mode_raw)
        except ValueError:
            raise SettingsError(f"URL_MODE={mode_raw!r}: expected unified or legacy") from None
        return cls(
            database_url=env.get("DATABASE_URL", defaults.database_url),
            host=host,
            port=port,
            jwt_secret=env.get("JWT_SECRET") or defaults.jwt_secret,
            storage_key=env.get("STORAGE_KEY") or defaults.storage_key,
            storage_dir=Path(env.get("STORAGE_DIR", str(defaults.storage_dir))),
            public_url=env.get("PUBLIC_URL", f"http://{host}:{port}"),
            url_mode=url_mode,
            url_window_s=_int(env, "URL_WINDOW_S", defaults.url_window_s, 60),
            url_cache_size=_int(env, "URL_CACHE_SIZE", defaults.url_cache_size, 1),
            url_resign_margin_s=_int(env, "URL_RESIGN_MARGIN_S", defaults.url_resign_margin_s),
            storage_remote_url=env.get("STORAGE_REMOTE_URL", ""),
            storage_remote_key=env.get("STORAGE_REMOTE_KEY", ""),
            page_size_default=_int(env, "PAGE_SIZE_DEFAULT", defaults.page_size_default, 1),
            page_size_max=_int(env, "PAGE_SIZE_MAX", defaults.page_size_max, 1),
            pool_min_size=_int(env, "POOL_MIN_SIZE", defaults.pool_min_size, 1),
            pool_max_size=_int(env, "POOL_MAX_SIZE", defaults.pool_max_size, 1),
            batch_max_ids=_int(env, "BATCH_MAX_IDS", defaults.batch_max_ids, 1),
            search_count_cap=_int(env, "SEARCH_COUNT_CAP", defaults.search_count_cap, 1),
            batch_inline_max=_int(env, "BATCH_INLINE_MAX", defaults.batch_inline_max),
            batch_chunk_size=_int(env, "BATCH_CHUNK_SIZE", defaults.batch_chunk_size, 1),
            trash_retention_s=_int(env, "TRASH_RETENTION_S", defaults.trash_retention_s),
            purge_interval_s=_int(env, "PURGE_INTERVAL_S", defaults.purge_interval_s, 1),
            purge_retry_base_s=_int(env, "PURGE_RETRY_BASE_S", defaults.purge_retry_base_s),
            purge_retry_max_s=_int(env, "PURGE_RETRY_MAX_S", defaults.purge_retry_max_s),
            download_max_bytes=_int(env, "DOWNLOAD_MAX_BYTES", defaults.download_max_bytes, 1),
            organize_threshold=_unit_float(env, "ORGANIZE_THRESHOLD", defaults.organize_threshold),
            organize_themes=_words(env, "ORGANIZE_THEMES", defaults.organize_themes),
            organize_cache_users=_int(
                env, "ORGANIZE_CACHE_USERS", defaults.organize_cache_users, 1
            ),
            workers=_int(env, "WORKERS", os.cpu_count() or 1, 1),
            redis_url=env.get("REDIS_URL", ""),
            redis_prefix=env.get("REDIS_PREFIX") or defaults.redis_prefix,
        )
