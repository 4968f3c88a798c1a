"""The stored files behind assets: each content stored once, linked within the link limit."""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

from fixtures.database import run_async
from fixtures.storage_files import (
    BLOB_DIR,
    BlobStore,
    blob_pool,
    id_range,
    write_storage_objects_in_child,
)


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


def test_id_ranges_cover_every_id_once() -> None:
    for parts in (1, 2, 3):
        ranges = [id_range(part, parts) for part in range(parts)]
        assert ranges[0][0] == uuid.UUID(int=0)
        assert ranges[-1][1] is None
        for (_, high), (low, _) in itertools.pairwise(ranges):
            assert high == low


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and BLOB_DIR not in path.parts
    }


def test_writers_in_parallel_place_the_same_files_as_one(seeded_template, tmp_path: Path) -> None:
    """Two child processes, each on its own range of ids, leave the tree one writer leaves."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_async(write_storage_objects_in_child(seeded_template.dsn, one, False, writers=1))
    report = run_async(write_storage_objects_in_child(seeded_template.dsn, two, False, writers=2))
    expected = _files(one)
    assert report.written == len(expected) > 0
    assert _files(two) == expected
    assert sorted(p.name for p in (two / BLOB_DIR).iterdir()) == ["0", "1"]
