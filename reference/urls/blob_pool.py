"""The fixed pool of contents behind the generated assets: small PNGs, a WebP, MP4 stubs.

Deterministic (no randomness, no imaging library), so every process derives the same bytes and
the same content hashes: the fixture writer maps millions of object names to these few blobs in
the database, and whoever opens an :class:`~reference.urls.object_store.ObjectStore` writes any
missing one, so a database reused with a new, empty storage directory still serves every name.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from functools import cache
from typing import Final

PNG_POOL: Final = 16
#: A valid 1x1 lossless WebP (VP8L); thumbnails only need to decode.
WEBP_1X1: Final = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour with a diagonal stripe (zlib, no imaging library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows.extend((255, 255, 255) if x == y else rgb)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def mp4_stub(seconds: int) -> bytes:
    """An ISO BMFF file with ``ftyp``, ``free`` and an empty ``mdat``: a recognisable MP4."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41")
    return ftyp + box(b"free", f"workspace-bench stub {seconds}s".encode()) + box(b"mdat", b"")


def blob_pool() -> dict[str, list[bytes]]:
    """The contents by file suffix; a name with another suffix gets a PNG."""
    pngs = [
        png_bytes(16, 16, ((37 * i) % 256, (91 * i + 64) % 256, (53 * i + 128) % 256))
        for i in range(PNG_POOL)
    ]
    return {".png": pngs, ".webp": [WEBP_1X1], ".mp4": [mp4_stub(s) for s in (3, 5, 10)]}


def content_hash(data: bytes) -> str:
    """A blob's name and its object's ETag (without the quotes): blake2b-128, hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@cache
def pool_blobs() -> dict[str, bytes]:
    """Every pool content by its hash."""
    return {content_hash(data): data for contents in blob_pool().values() for data in contents}


@cache
def _pool_choices() -> dict[str, list[tuple[str, int]]]:
    return {
        suffix: [(content_hash(data), len(data)) for data in contents]
        for suffix, contents in blob_pool().items()
    }


def pool_blob_for(name: str) -> tuple[str, int]:
    """The pool content an object name gets, as (hash, size): by its suffix, then a checksum
    of the name (CRC-32: the cheapest stable one; millions of names go through here), so a name
    always gets the same bytes."""
    choices = _pool_choices()
    pool = choices.get(name[name.rfind(".") :], choices[".png"])
    return pool[zlib.crc32(name.encode()) % len(pool)]
