"""One bucket rule for every asset, and which object names stay inside their bucket.

The plan's ``determineBucket`` covers images only; videos get the same rule with their own
buckets. SDXL wins over the enhanced flag, as in the plan's order of tests.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Final

from reference.assets import ContentType, ModelType, Quality

IMAGE_BUCKETS: Final = frozenset(
    {
        "sdxl_image_high",
        "sdxl_image_fast",
        "image7b_high_enhanced",
        "image7b_fast_enhanced",
        "image_high",
        "image_fast",
    }
)
VIDEO_BUCKETS: Final = frozenset(
    {"video7b_high_enhanced", "video7b_fast_enhanced", "video_high", "video_fast"}
)
BUCKETS: Final = IMAGE_BUCKETS | VIDEO_BUCKETS


class UnsafePath(ValueError):
    """An object path that would leave its bucket (``..``, absolute, empty, NUL)."""


def _flag(metadata: dict[str, Any] | None, key: str) -> bool:
    value = (metadata or {}).get(key)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def determine_bucket(
    content_type: ContentType | str,
    quality: Quality | str,
    model_type: str | None,
    metadata: dict[str, Any] | None,
) -> str:
    speed = "high" if quality == Quality.HIGH else "fast"
    meta_model = str((metadata or {}).get("model_type", "")).lower()
    model = (model_type or "").lower()
    is_sdxl = _flag(metadata, "is_sdxl") or meta_model == "sdxl" or model == "sdxl"
    is_enhanced = (
        _flag(metadata, "enhanced") or model == ModelType.ENHANCED.lower() or "7b" in model
    )
    if content_type == ContentType.VIDEO:
        return f"video7b_{speed}_enhanced" if is_enhanced else f"video_{speed}"
    if is_sdxl:
        return f"sdxl_image_{speed}"
    if is_enhanced:
        return f"image7b_{speed}_enhanced"
    return f"image_{speed}"


def safe_object_path(path: str) -> PurePosixPath:
    if not path or "\x00" in path or "\\" in path:
        raise UnsafePath(path)
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in path.split("/")):
        raise UnsafePath(path)
    return pure
