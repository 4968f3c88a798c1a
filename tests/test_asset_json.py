"""PostgreSQL's JSON of an asset equals ``Asset.to_json`` value for value, type for type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from reference.asset_json import ASSET_JSON, extended
from reference.assets import ASSET_COLUMNS, Asset
from reference.db.pool import connect

ROWS = f"select {ASSET_COLUMNS}, {ASSET_JSON} as item from assets a order by a.id"
INSERT_VIDEO = """
insert into videos (id, user_id, prompt, status, quality, model_type, storage_path,
                    thumbnail_path, duration_s, metadata, created_at)
values ($1, $2, $3, 'completed', 'high', $4, 'u/v.mp4', 'u/v.jpg', $5, $6::text::jsonb, $7)
"""
USER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
#: Values whose spelling Python and PostgreSQL would each print their own way.
EDGES: list[tuple[str, str | None, float | None, str | None, datetime]] = [
    ("whole \"quoted\" \\ line\nbreak\ttab \x01 ü 漢", None, 5.0, None,
     datetime(2024, 5, 1, tzinfo=UTC)),
    ("a real", "WAN", 12.3, "null", datetime(2024, 5, 1, 1, 2, 3, 120000, tzinfo=UTC)),
    ("tiny", "SDXL", 0.1, '{"workspace_dismissed": "true", "job_id": "j-1"}',
     datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)),
    ("big", None, 1e17, '{"workspace_dismissed": true, "n": [1, 2.5, {"x": null}]}',
     datetime(2024, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)),
    ("false", None, -3.75, '{"workspace_dismissed": "false", "k": "TRUE"}',
     datetime(2030, 6, 15, 12, tzinfo=UTC)),
]  # fmt: skip


def strict(value: Any) -> Any:
    """``value`` with each scalar tagged by its type: 5 and 5.0, or "5" and 5, differ."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.asyncio
async def test_every_seeded_and_edge_asset_matches_to_json(seeded_dsn: str) -> None:
    async with connect(seeded_dsn, json_codecs=True) as conn:
        for prompt, model, duration, metadata, created in EDGES:
            await conn.execute(
                INSERT_VIDEO, uuid.uuid4(), USER, prompt, model, duration, metadata, created
            )
        rows = await conn.fetch(ROWS)
    assert len(rows) > len(EDGES)
    for row in rows:
        expected = Asset.from_record(row).to_json()
        got = orjson.loads(row["item"])
        assert list(got) == list(expected)
        assert strict(got) == strict(expected), row["id"]
        # Same bytes once PostgreSQL's spaces after ':' and ',' are gone.
        assert orjson.dumps(got) == orjson.dumps(expected)


def test_extended_appends_fields_in_order() -> None:
    item = orjson.dumps({"id": "x", "n": 1}).decode()
    page = orjson.dumps({"assets": [extended(item, url="u", more=None), extended(item)]})
    assert orjson.loads(page) == {
        "assets": [{"id": "x", "n": 1, "url": "u", "more": None}, {"id": "x", "n": 1}]
    }
