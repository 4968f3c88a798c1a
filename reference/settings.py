"""Service settings, read from the environment once; each variable declared once, here.

Every field of :class:`Settings` names its environment variable, how to read it and a one-line
description (``VARIABLES`` lists them; a test checks the README's tables against it). No secret
is written in the source: an unset ``JWT_SECRET``, ``STORAGE_KEY`` or ``SERVICE_ROLE_KEY`` is
generated at random when the settings are made, and :func:`announce_generated` says so.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final

#: Bytes of entropy in a generated secret; also the shortest secret accepted from outside.
SECRET_BYTES: Final = 32
SECRET_NAMES: Final = ("JWT_SECRET", "STORAGE_KEY", "SERVICE_ROLE_KEY")
GENERATED: Final = "generated at start"


class UrlMode(StrEnum):
    UNIFIED = "unified"
    LEGACY = "legacy"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def generate_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


Parser = Callable[[str, str], Any]


def _integer(minimum: int) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected an integer") from None
        if value < minimum:
            raise SettingsError(f"{name}={value}: must be at least {minimum}")
        return value

    return parse


def _unit_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if not 0.0 < value <= 1.0:
        raise SettingsError(f"{name}={value}: must be within (0, 1]")
    return value


def _words(name: str, raw: str) -> tuple[str, ...]:
    return tuple(word.strip().lower() for word in raw.split(",") if word.strip())


def _url_mode(name: str, raw: str) -> UrlMode:
    try:
        return UrlMode(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected unified or legacy") from None


def _flag(name: str, raw: str) -> bool:
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected 1 or 0")


def _text(name: str, raw: str) -> str:
    return raw


def setting(
    env: str,
    description: str,
    default: Any = dataclasses.MISSING,
    *,
    parse: Parser = _text,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A field read from ``env``; ``shown`` is the default as the README writes it."""
    metadata = {"env": env, "description": description, "parse": parse, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its default as documented, what it does."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        "DATABASE_URL",
        "use this PostgreSQL instead of starting one (never started/stopped by us)",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        shown="unset",
    )
    host: str = setting("HOST", "where the service listens", "127.0.0.1")
    port: int = setting("PORT", "where the service listens", 8080, parse=_integer(0))
    jwt_secret: str = setting(
        "JWT_SECRET",
        "HS256 secret of the bearer tokens (at least 32 bytes)",
        factory=generate_secret,
        shown=GENERATED,
    )
    storage_key: str = setting(
        "STORAGE_KEY",
        "secret that signs storage URLs (at least 32 bytes)",
        factory=generate_secret,
        shown=GENERATED,
    )
    service_role_key: str = setting(
        "SERVICE_ROLE_KEY",
        "bearer of the service role on the storage sign routes; never the same as STORAGE_KEY",
        factory=generate_secret,
        shown=GENERATED,
    )
    allow_weak_secrets: bool = setting(
        "ALLOW_WEAK_SECRETS",
        "with `1`, accept secrets shorter than 32 bytes (development only)",
        False,
        parse=_flag,
        shown="unset",
    )
    storage_dir: Path = setting(
        "STORAGE_DIR",
        "where stored objects' blobs live on disk (their names map to them in storage_objects)",
        Path(".data/storage"),
        parse=lambda _, raw: Path(raw),
    )
    public_url: str = setting(
        "PUBLIC_URL",
        "base of the signed URLs the service hands out",
        "",
        shown="http://HOST:PORT",
    )
    url_mode: UrlMode = setting(
        "URL_MODE",
        "`unified` (the plan's service) or `legacy` (the scattered pre-plan way)",
        UrlMode.UNIFIED,
        parse=_url_mode,
    )
    url_window_s: int = setting(
        "URL_WINDOW_S",
        "signed URLs are signed per window of this length and live one to two windows",
        3600,
        parse=_integer(60),
    )
    url_cache_size: int = setting(
        "URL_CACHE_SIZE", "bound of the signed-URL cache", 50_000, parse=_integer(1)
    )
    url_resign_margin_s: int = setting(
        "URL_RESIGN_MARGIN_S",
        "re-sign a cached URL when less than this much of its life is left",
        300,
        parse=_integer(0),
    )
    storage_remote_url: str = setting(
        "STORAGE_REMOTE_URL",
        "sign through a real Supabase Storage (batch sign endpoint) instead of in-process",
        "",
        shown="unset",
    )
    storage_remote_key: str = setting(
        "STORAGE_REMOTE_KEY",
        "the remote storage's service-role key (default: SERVICE_ROLE_KEY)",
        "",
        shown="unset",
    )
    page_size_default: int = setting(
        "PAGE_SIZE_DEFAULT", "page size when a client names none", 50, parse=_integer(1)
    )
    page_size_max: int = setting(
        "PAGE_SIZE_MAX", "largest page a client may ask for", 200, parse=_integer(1)
    )
    pool_min_size: int = setting("POOL_MIN_SIZE", "asyncpg pool bounds", 2, parse=_integer(1))
    pool_max_size: int = setting("POOL_MAX_SIZE", "asyncpg pool bounds", 20, parse=_integer(1))
    db_statement_timeout_ms: int = setting(
        "DB_STATEMENT_TIMEOUT_MS",
        "a statement's bound, on the server (the client gives up a second later)",
        10_000,
        parse=_integer(1),
    )
    db_lock_timeout_ms: int = setting(
        "DB_LOCK_TIMEOUT_MS",
        "a row or advisory lock's bound (also how long a batch waits for the user's previous one)",
        3_000,
        parse=_integer(1),
    )
    db_acquire_timeout_ms: int = setting(
        "DB_ACQUIRE_TIMEOUT_MS",
        "taking a connection from the pool, opening one included",
        3_000,
        parse=_integer(1),
    )
    healthz_timeout_ms: int = setting(
        "HEALTHZ_TIMEOUT_MS", "`/healthz` end to end", 2_000, parse=_integer(1)
    )
    batch_max_ids: int = setting(
        "BATCH_MAX_IDS", "most ids one batch request may name", 10_000, parse=_integer(1)
    )
    search_count_cap: int = setting(
        "SEARCH_COUNT_CAP",
        "a search stops counting matches here: `total_is_exact: false`, at least this many",
        1_000,
        parse=_integer(1),
    )
    search_serial_scan_ms: int = setting(
        "SEARCH_SERIAL_SCAN_MS",
        "a prompt query no index serves scans on one process this long, then again on parallel "
        "workers (0: on workers at once)",
        25,
        parse=_integer(0),
    )
    batch_inline_max: int = setting(
        "BATCH_INLINE_MAX",
        "larger batch operations run server-side in chunks, with progress",
        1_000,
        parse=_integer(0),
    )
    batch_chunk_size: int = setting(
        "BATCH_CHUNK_SIZE", "assets per chunk (one transaction each)", 1_000, parse=_integer(1)
    )
    batch_lease_s: int = setting(
        "BATCH_LEASE_S",
        "a background operation's lease, renewed by each chunk; lapsed, another worker takes over",
        30,
        parse=_integer(1),
    )
    batch_retry_base_ms: int = setting(
        "BATCH_RETRY_BASE_MS",
        "back-off of a failed chunk, doubling from base to max",
        500,
        parse=_integer(1),
    )
    batch_retry_max_ms: int = setting(
        "BATCH_RETRY_MAX_MS",
        "back-off of a failed chunk, doubling from base to max",
        10_000,
        parse=_integer(1),
    )
    trash_retention_s: int = setting(
        "TRASH_RETENTION_S",
        "trash older than this is purged by the background worker",
        30 * 86_400,
        parse=_integer(0),
    )
    purge_interval_s: int = setting(
        "PURGE_INTERVAL_S", "how often the trash worker runs", 60, parse=_integer(1)
    )
    purge_retry_base_s: int = setting(
        "PURGE_RETRY_BASE_S", "back-off of a failed file removal", 30, parse=_integer(0)
    )
    purge_retry_max_s: int = setting(
        "PURGE_RETRY_MAX_S", "back-off of a failed file removal", 3_600, parse=_integer(0)
    )
    download_max_bytes: int = setting(
        "DOWNLOAD_MAX_BYTES",
        "largest ZIP a download may stream (413 above)",
        4 * 1024**3,
        parse=_integer(1),
    )
    organize_threshold: float = setting(
        "ORGANIZE_THRESHOLD",
        "Jaccard similarity (word-pair shingles) at which prompts are near-duplicates",
        0.8,
        parse=_unit_float,
    )
    organize_themes: tuple[str, ...] = setting(
        "ORGANIZE_THEMES",
        "the tag-suggestion theme vocabulary (comma-separated)",
        ("portrait", "landscape", "product", "artistic", "commercial"),
        parse=_words,
    )
    organize_cache_users: int = setting(
        "ORGANIZE_CACHE_USERS",
        "per-user LSH indexes one process keeps in memory",
        16,
        parse=_integer(1),
    )
    organize_build_wait_ms: int = setting(
        "ORGANIZE_BUILD_WAIT_MS",
        "how long an organize request waits for the user's index build; past it, a 503 with "
        "`Retry-After` while the build goes on in the background",
        2_000,
        parse=_integer(0),
    )
    workers: int = setting(
        "WORKERS",
        "service processes behind one port (`SO_REUSEPORT`); 1 serves in this process",
        factory=lambda: os.cpu_count() or 1,
        parse=_integer(1),
        shown="the number of cores",
    )
    redis_url: str = setting(
        "REDIS_URL",
        "Redis shared by the workers (URL cache L2, LSH index); unset: per-process only",
        "",
        shown="unset",
    )
    redis_prefix: str = setting(
        "REDIS_PREFIX",
        "prefix of every Redis key the service writes (several services may share one Redis)",
        "wsb:",
    )
    #: Names of the secrets that were generated rather than given (not a variable).
    generated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        if self.url_resign_margin_s >= self.url_window_s:
            # A window's URL has more than one window left; a larger margin would never hit.
            raise SettingsError("URL_RESIGN_MARGIN_S must be less than URL_WINDOW_S")
        if self.storage_key == self.service_role_key:
            raise SettingsError("SERVICE_ROLE_KEY must differ from STORAGE_KEY")
        if self.allow_weak_secrets:
            return
        for name, value in self.secrets().items():
            if len(value.encode()) < SECRET_BYTES:
                raise SettingsError(
                    f"{name} is {len(value.encode())} bytes; at least {SECRET_BYTES} "
                    "(ALLOW_WEAK_SECRETS=1 accepts it for development)"
                )

    def secrets(self) -> dict[str, str]:
        return {
            "JWT_SECRET": self.jwt_secret,
            "STORAGE_KEY": self.storage_key,
            "SERVICE_ROLE_KEY": self.service_role_key,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        values: dict[str, Any] = {}
        generated: set[str] = set()
        for item in dataclasses.fields(cls):
            name = item.metadata.get("env")
            if name is None:
                continue
            raw = env.get(name, "")
            if raw == "":
                if name in SECRET_NAMES:
                    generated.add(name)
                continue
            values[item.name] = item.metadata["parse"](name, raw)
        return cls(**values, generated=frozenset(generated))


def _shown(item: dataclasses.Field[Any]) -> str:
    shown: str | None = item.metadata["shown"]
    if shown is not None:
        return shown
    if isinstance(item.default, tuple):
        return ",".join(item.default)
    return str(item.default)


VARIABLES: Final = tuple(
    Variable(item.metadata["env"], _shown(item), item.metadata["description"])
    for item in dataclasses.fields(Settings)
    if "env" in item.metadata
)


def announce_generated(settings: Settings, stream: IO[str] | None = None) -> None:
    """Say on stderr which secrets this process made up (tokens signed elsewhere won't verify)."""
    out = stream or sys.stderr
    for name in sorted(settings.generated):
        print(
            f"{name} is not set: generated a random one for this process; set it to keep "
            "tokens and URLs valid across restarts and processes",
            file=out,
            flush=True,
        )


def child_secrets(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The secrets a harness hands to the service it starts and to its load generator: the
    ones set in ``env``, the others generated once here."""
    return {name: env.get(name) or generate_secret() for name in SECRET_NAMES}
