"""The bucket rule for every combination of type, quality, model and flags; object paths."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from reference.assets import Asset, ContentType, Quality
from reference.urls.buckets import (
    BUCKETS,
    IMAGE_BUCKETS,
    VIDEO_BUCKETS,
    UnsafePath,
    determine_bucket,
)
from reference.urls.object_store import check_name, quick_name_check
from reference.urls.service import asset_bucket

#: model_type column -> (is SDXL, is enhanced) as the column alone says.
MODELS = {
    None: (False, False),
    "SDXL": (True, False),
    "sdxl": (True, False),
    "WAN": (False, False),
    "Enhanced": (False, True),
    "qwen-7b": (False, True),
}
#: a flag's stored value -> whether it counts as set (JSON true or the string "true").
FLAG_VALUES = {"absent": False, True: True, False: False, "true": True, "false": False}
META_MODELS = {"absent": False, "sdxl": True, "SDXL": True, "wan": False}


def metadata_for(is_sdxl, enhanced, meta_model):
    meta = {}
    if is_sdxl != "absent":
        meta["is_sdxl"] = is_sdxl
    if enhanced != "absent":
        meta["enhanced"] = enhanced
    if meta_model != "absent":
        meta["model_type"] = meta_model
    return meta


def expected(content_type, quality, model, sdxl, enhanced):
    speed = "high" if quality == Quality.HIGH else "fast"
    if content_type == ContentType.VIDEO:
        return f"video7b_{speed}_enhanced" if enhanced else f"video_{speed}"
    if sdxl:
        return f"sdxl_image_{speed}"
    if enhanced:
        return f"image7b_{speed}_enhanced"
    return f"image_{speed}"


COMBINATIONS = list(
    itertools.product(ContentType, Quality, MODELS, FLAG_VALUES, FLAG_VALUES, META_MODELS)
)


@pytest.mark.parametrize(
    ("content_type", "quality", "model", "is_sdxl", "enhanced", "meta_model"), COMBINATIONS
)
def test_every_combination(content_type, quality, model, is_sdxl, enhanced, meta_model):
    sdxl = MODELS[model][0] or FLAG_VALUES[is_sdxl] or META_MODELS[meta_model]
    enh = MODELS[model][1] or FLAG_VALUES[enhanced]
    meta = metadata_for(is_sdxl, enhanced, meta_model)
    bucket = determine_bucket(content_type, quality, model, meta)
    assert bucket == expected(content_type, quality, model, sdxl, enh)
    assert bucket in (VIDEO_BUCKETS if content_type == ContentType.VIDEO else IMAGE_BUCKETS)
    # The stored (string) forms of the enums give the same answer.
    assert determine_bucket(content_type.value, quality.value, model, meta) == bucket


@pytest.mark.parametrize("metadata", [None, {}])
@pytest.mark.parametrize("content_type", list(ContentType))
def test_missing_metadata_means_plain(content_type, metadata):
    assert determine_bucket(content_type, "high", None, metadata).endswith("_high")
    assert determine_bucket(content_type, "fast", None, metadata) in {"image_fast", "video_fast"}


def test_sdxl_wins_over_enhanced_for_images_only():
    meta = {"is_sdxl": True, "enhanced": True}
    assert determine_bucket("image", "high", None, meta) == "sdxl_image_high"
    assert determine_bucket("video", "high", None, meta) == "video7b_high_enhanced"


def test_every_bucket_is_reachable():
    reached = {
        determine_bucket(t, q, m, metadata_for(s, e, mm)) for t, q, m, s, e, mm in COMBINATIONS
    }
    assert reached == BUCKETS


@pytest.mark.parametrize("check", [check_name, quick_name_check])
def test_object_names_inside_a_bucket_pass(check):
    for name in ("u/j/0.png", "u/j/0.thumb.webp", ".hidden/a.png", "a photo (final) 100%.png"):
        check("image_fast", name)


@pytest.mark.parametrize("check", [check_name, quick_name_check])
@pytest.mark.parametrize(
    "path",
    ["", "../x.png", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "a\x00b", "a/..", "a/.",
     ".", "a/"],
)  # fmt: skip
def test_object_names_that_would_leave_the_bucket_are_refused(check, path):
    with pytest.raises(UnsafePath):
        check("image_fast", path)


@pytest.mark.parametrize("check", [check_name, quick_name_check])
def test_object_names_of_an_unknown_bucket_are_refused(check):
    with pytest.raises(UnsafePath):
        check("secrets", "a.png")


#: Metadata values the remembered bucket must keep apart (True and 1 compare equal in Python)
#: or decide afresh (a JSON object or list cannot be a cache key).
TRICKY_VALUES = [
    "absent", None, True, 1, 1.0, False, 0, "true", "TRUE", "sdxl", "SDXL", {"a": 1}, ["true"],
]  # fmt: skip


@pytest.mark.parametrize("content_type", list(ContentType))
@pytest.mark.parametrize("key", ["is_sdxl", "enhanced", "model_type"])
def test_remembered_bucket_is_the_rule(content_type: ContentType, key: str) -> None:
    for quality, model, value in itertools.product(("fast", "high"), MODELS, TRICKY_VALUES):
        meta = {} if value == "absent" else {key: value}
        asset = Asset(
            content_type, uuid.uuid4(), uuid.uuid4(), None, "p", "completed", quality, model,
            "u/a.png", "u/a.thumb.webp", None, meta, datetime.now(UTC),
        )  # fmt: skip
        expected = determine_bucket(content_type, quality, model, meta)
        # Twice: the second answer comes from the cache.
        assert asset_bucket(asset) == expected, (quality, model, meta)
        assert asset_bucket(asset) == expected, (quality, model, meta)
