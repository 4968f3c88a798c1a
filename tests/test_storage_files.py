"""The fixture writer's ranges of ids: every asset's objects are written by exactly one writer."""

from __future__ import annotations

import itertools
import uuid

from fixtures.storage_files import id_range


def test_id_ranges_cover_every_id_once() -> None:
    for parts in (1, 2, 3):
        ranges = [id_range(part, parts) for part in range(parts)]
        assert ranges[0][0] == uuid.UUID(int=0)
        assert ranges[-1][1] is None
        for (_, high), (low, _) in itertools.pairwise(ranges):
            assert high == low
