"""The stored files behind assets: each content stored once, linked within the link limit."""

from __future__ import annotations

import os
from pathlib import Path

from fixtures.storage_files import BlobStore, blob_pool


def test_a_full_blob_gets_a_next_generation_and_every_path_keeps_its_bytes(
    tmp_path: Path,
) -> None:
    """ext4 refuses a 65,001st link to one inode; past 65,000 assets per content the store
    used to fall back to copying every file (100k scale: 400,000 files of their own)."""
    store = BlobStore(tmp_path, links_per_blob=4)
    paths = [f"user/job{i}/0.thumb.webp" for i in range(10)]
    placed = [store.place(tmp_path / "image_fast" / p, p) for p in paths]
    assert placed == [True] * len(paths)
    (webp,) = blob_pool()[".webp"]
    inodes = set()
    for path in paths:
        target = tmp_path / "image_fast" / path
        assert target.read_bytes() == webp
        stat = os.stat(target)
        assert stat.st_nlink <= 4
        inodes.add(stat.st_ino)
    assert len(inodes) == 4  # 3 links besides the blob's own name per generation

    again = BlobStore(tmp_path, links_per_blob=4)
    assert [again.place(tmp_path / "image_fast" / p, p) for p in paths] == [False] * len(paths)
