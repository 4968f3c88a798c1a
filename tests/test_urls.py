"""The unified URL service: windowed signatures, the bounded cache, batch signing per bucket."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from reference.assets import Asset, ContentType
from reference.urls.service import LocalSigner, UnifiedUrlService, UrlCache, window_bounds
from reference.urls.storage_api import StorageError, verify_object_token
from reference.web.metrics import Metrics
from tests.conftest import SETTINGS

WINDOW = 3600
T0 = 1_700_000_000 - 1_700_000_000 % WINDOW  # the start of a window


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(clock, **overrides):
    # One STORAGE_KEY for every service made here, as for the processes of one deployment.
    settings = dataclasses.replace(SETTINGS, url_window_s=WINDOW, **overrides)
    metrics = Metrics()
    signer = LocalSigner(settings.storage_key, settings.public_url, WINDOW, clock)
    return UnifiedUrlService(settings, metrics, signer, clock)


def make_asset(path="u/j/0", content_type=ContentType.IMAGE, quality="fast", model=None, meta=None):
    ext = "mp4" if content_type == ContentType.VIDEO else "png"
    return Asset(
        content_type, uuid.uuid4(), uuid.uuid4(), None, "a prompt", "completed", quality, model,
        f"{path}.{ext}", f"{path}.thumb.webp", None, meta or {}, datetime.now(UTC),
    )  # fmt: skip


def token_of(url):
    return parse_qs(urlsplit(url).query)["token"][0]


def sample(service, name, **labels):
    value = service.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_window_bounds():
    assert window_bounds(T0, WINDOW) == (T0, T0 + 2 * WINDOW)
    assert window_bounds(T0 + WINDOW - 0.5, WINDOW) == (T0, T0 + 2 * WINDOW)
    assert window_bounds(T0 + WINDOW, WINDOW) == (T0 + WINDOW, T0 + 3 * WINDOW)


async def test_same_url_within_a_window_different_across():
    asset = make_asset()
    urls = []
    for now in (T0 + 1, T0 + 1800.25, T0 + WINDOW - 1, T0 + WINDOW + 1):
        # A fresh service each time: the URL depends on the window alone, not on the cache.
        (url,) = await make_service(Clock(now)).thumbnail_urls([asset])
        urls.append(url)
    assert urls[0] == urls[1] == urls[2]
    assert urls[3] != urls[0]


async def test_url_shape_and_claims():
    settings = SETTINGS
    asset = make_asset("user/job/3")
    service = make_service(Clock(T0 + 10))
    (url,) = await service.thumbnail_urls([asset])
    expected = f"{settings.public_url}/storage/v1/object/sign/image_fast/user/job/3.thumb.webp"
    assert url.startswith(expected + "?token=")
    claims = jwt.decode(
        token_of(url), settings.storage_key, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims == {"url": "image_fast/user/job/3.thumb.webp", "iat": T0, "exp": T0 + 2 * WINDOW}
    high = await service.high_res_url(asset)
    assert "/image_fast/user/job/3.png?token=" in high


async def test_token_tamper_expiry_and_wrong_path_are_refused():
    settings = SETTINGS
    clock = Clock(0)  # signed long ago: expired by now
    (old,) = await make_service(clock).thumbnail_urls([make_asset("u/j/0")])
    with pytest.raises(StorageError) as expired:
        verify_object_token(settings.storage_key, token_of(old), "image_fast", "u/j/0.thumb.webp")
    assert (expired.value.code, expired.value.message) == ("InvalidJWT", "jwt expired")

    clock.now = datetime.now(UTC).timestamp()
    (url,) = await make_service(clock).thumbnail_urls([make_asset("u/j/0")])
    token = token_of(url)
    claims = verify_object_token(settings.storage_key, token, "image_fast", "u/j/0.thumb.webp")
    assert claims["url"] == "image_fast/u/j/0.thumb.webp"
    with pytest.raises(StorageError) as wrong:
        verify_object_token(settings.storage_key, token, "image_fast", "u/j/1.thumb.webp")
    assert wrong.value.code == "InvalidSignature"
    with pytest.raises(StorageError) as other_bucket:
        verify_object_token(settings.storage_key, token, "image_high", "u/j/0.thumb.webp")
    assert other_bucket.value.code == "InvalidSignature"
    header, _payload, signature = token.split(".")
    wrong_key = "not-the-storage-key-but-long-enough-for-hs256"
    forged = jwt.encode({**claims, "url": "image_fast/v/j/0.thumb.webp"}, wrong_key, "HS256")
    for bad in (f"{header}.{forged.split('.')[1]}.{signature}", token[:-2] + "xx", "garbage"):
        with pytest.raises(StorageError) as tampered:
            verify_object_token(settings.storage_key, bad, "image_fast", "u/j/0.thumb.webp")
        assert tampered.value.code == "InvalidJWT"
        assert tampered.value.status == 400


async def test_cache_hits_and_counters():
    service = make_service(Clock(T0 + 5))
    assets = [make_asset(f"u/j/{i}") for i in range(4)]
    first = await service.thumbnail_urls(assets)
    second = await service.thumbnail_urls(assets)
    assert first == second
    assert (service.cache.hits, service.cache.misses) == (4, 4)
    assert sample(service, "url_cache_hits_total", mode="unified") == 4
    assert sample(service, "url_cache_misses_total", mode="unified") == 4
    assert sample(service, "urls_signed_total", mode="unified", bucket="image_fast") == 4


COUNTERS = [
    ("url_cache_hits_total", {"mode": "unified"}),
    ("url_cache_misses_total", {"mode": "unified"}),
    ("url_cache_level_hits_total", {"mode": "unified", "level": "l1"}),
    ("url_cache_level_misses_total", {"mode": "unified", "level": "l1"}),
    ("url_cache_entries", {"mode": "unified"}),
]


@pytest.mark.parametrize("warm", [4, 2], ids=["every-url-cached", "half-cached"])
async def test_page_urls_are_sign_objects_urls_with_the_same_counts(warm: int) -> None:
    """The page routes' shortcut (no result object when the whole page is cached) answers and
    counts exactly as the general path."""
    clock = Clock(T0 + 5)
    shortcut, general = make_service(clock), make_service(clock)
    assets = [make_asset(f"u/j/{i}") for i in range(4)]
    objects = [("image_fast", a.thumbnail_path) for a in assets]
    for service in (shortcut, general):
        await service.thumbnail_urls(assets[:warm])
    found = await shortcut.object_urls(objects)
    expected = [r.url for r in await general.sign_objects(objects)]
    assert found == expected
    assert None not in found
    assert (shortcut.cache.hits, shortcut.cache.misses) == (
        general.cache.hits,
        general.cache.misses,
    )
    for name, labels in COUNTERS:
        assert sample(shortcut, name, **labels) > 0, name  # a name that exists
        assert sample(shortcut, name, **labels) == sample(general, name, **labels), name


async def test_cache_is_bounded_and_evicts_least_recently_used():
    service = make_service(Clock(T0 + 5), url_cache_size=3)
    a, b, c, d, e = (make_asset(f"u/j/{i}") for i in range(5))
    await service.thumbnail_urls([a, b, c])
    await service.thumbnail_urls([a])  # a is now the most recently used
    await service.thumbnail_urls([d, e])  # evicts b, then c
    assert len(service.cache) == 3
    assert service.cache.evictions == 2
    assert sample(service, "url_cache_evictions_total", mode="unified") == 2
    hits = service.cache.hits
    await service.thumbnail_urls([a, d, e])
    assert service.cache.hits == hits + 3
    await service.thumbnail_urls([b])
    assert service.cache.hits == hits + 3  # b was evicted: a miss


async def test_an_earlier_windows_entry_is_a_miss_so_warm_and_cold_agree():
    """Issue 13: past a window boundary a warm cache kept the previous window's URL while a
    cold process signed the current one (two URLs in one window, one with 301 s to live)."""
    clock = Clock(T0 + 5)
    warm = make_service(clock)
    asset = make_asset()
    (first,) = await warm.thumbnail_urls([asset])
    clock.now = T0 + WINDOW + 1
    (warm_url,) = await warm.thumbnail_urls([asset])
    (cold_url,) = await make_service(Clock(clock.now)).thumbnail_urls([asset])
    assert warm_url == cold_url != first
    claims = jwt.decode(token_of(warm_url), SETTINGS.storage_key, algorithms=["HS256"],
                        options={"verify_exp": False})  # fmt: skip
    assert claims["exp"] == T0 + 3 * WINDOW


@pytest.mark.parametrize("offset", [0, 1, WINDOW // 2, WINDOW - 301, WINDOW - 1, WINDOW - 0.001])
async def test_every_url_handed_out_lives_at_least_one_window(offset):
    clock = Clock(T0 - WINDOW + 7)
    service = make_service(clock)
    asset = make_asset()
    await service.thumbnail_urls([asset])  # warm from the previous window
    clock.now = T0 + offset
    (url,) = await service.thumbnail_urls([asset])
    claims = jwt.decode(token_of(url), SETTINGS.storage_key, algorithms=["HS256"],
                        options={"verify_exp": False})  # fmt: skip
    assert claims["exp"] - clock.now >= WINDOW
    restarted = make_service(Clock(clock.now))  # a new process, or this one after a restart
    assert await restarted.thumbnail_urls([asset]) == [url]


async def test_batch_is_one_call_per_bucket_with_per_item_errors():
    service = make_service(Clock(T0 + 5))
    objects = [
        ("image_fast", "u/j/0.png"),
        ("image_fast", "../escape.png"),
        ("video_high", "u/j/1.mp4"),
        ("no_such_bucket", "u/j/2.png"),
        ("image_fast", "u/j/3.png"),
        ("image_fast", "u/j/0.png"),  # the same object twice: signed once
    ]
    results = await service.sign_objects(objects)
    assert [(r.bucket, r.path) for r in results] == objects
    assert [r.url is not None for r in results] == [True, False, True, False, True, True]
    assert "invalid object path" in results[1].error
    assert "unknown bucket" in results[3].error
    assert results[0].url == results[5].url
    assert sample(service, "sign_calls_total", mode="unified", kind="batch") == 3
    assert sample(service, "urls_signed_total", mode="unified", bucket="image_fast") == 2


async def test_assets_map_to_their_buckets():
    service = make_service(Clock(T0 + 5))
    assets = [
        make_asset("a", ContentType.VIDEO, "high", "Enhanced"),
        make_asset("b", ContentType.IMAGE, "high", None, {"is_sdxl": True}),
        make_asset("c", ContentType.IMAGE, "fast", "Enhanced"),
        make_asset("../d"),
    ]
    urls = await service.thumbnail_urls(assets)
    assert "/video7b_high_enhanced/a.thumb.webp?" in urls[0]
    assert "/sdxl_image_high/b.thumb.webp?" in urls[1]
    assert "/image7b_fast_enhanced/c.thumb.webp?" in urls[2]
    assert urls[3] is None


def test_url_cache_alone():
    cache = UrlCache(size=2, resign_margin_s=10)
    assert cache.get(("b", "p"), 0) is None
    assert cache.put(("b", "p"), "u", 100) == 0
    assert cache.get(("b", "p"), 89) == "u"
    assert cache.get(("b", "p"), 91) is None
    assert cache.put(("b", "q"), "v", 100) == 0
    assert cache.put(("b", "r"), "w", 100) == 1
    assert len(cache) == 2
