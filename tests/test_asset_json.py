"""An asset's answer (``Asset.answer`` written by the service's ``orjson``) equals, value for
value and type for type, what its stored row means: the spelling of ids, times and numbers,
and the dismissed and job fields as SQL reads them from the metadata."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from reference.assets import ASSET_COLUMNS, Asset
from reference.db.pool import connect
from reference.web.errors import json_response

ROWS = f"""
select {ASSET_COLUMNS}, a.metadata::text as metadata_text,
       coalesce((a.metadata->>'workspace_dismissed') = 'true', false) as dismissed_in_sql,
       a.metadata->>'job_id' as job_id_in_sql
from assets a order by a.id
"""
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
    ("numbers", "Enhanced", None, '{"job_id": 42, "workspace_dismissed": 1, "big": 1e30}',
     datetime(2024, 2, 29, 23, 59, 59, 500000, tzinfo=UTC)),
]  # fmt: skip


def strict(value: Any) -> Any:
    """``value`` with each scalar tagged by its type: 5 and 5.0, or "5" and 5, differ."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return (type(value).__name__, value)


def expected_answer(row: asyncpg.Record) -> dict[str, Any]:
    """The answer written out from the row alone, in the API's order of fields."""
    metadata = orjson.loads(row["metadata_text"]) if row["metadata_text"] else None
    return {
        "id": str(row["id"]),
        "type": row["type"],
        "prompt": row["prompt"],
        "status": row["status"],
        "quality": row["quality"],
        "model_type": row["model_type"],
        "project_id": None if row["project_id"] is None else str(row["project_id"]),
        "job_id": row["job_id_in_sql"],
        "dismissed": row["dismissed_in_sql"],
        "duration_s": row["duration_s"],
        "metadata": metadata or {},
        "created_at": row["created_at"].isoformat(),
    }


@pytest.mark.asyncio
async def test_every_seeded_and_edge_asset_answers_what_its_row_means(seeded_dsn: str) -> None:
    async with connect(seeded_dsn, json_codecs=True) as conn:
        for prompt, model, duration, metadata, created in EDGES:
            await conn.execute(
                INSERT_VIDEO, uuid.uuid4(), USER, prompt, model, duration, metadata, created
            )
        rows = await conn.fetch(ROWS)
    assert len(rows) > len(EDGES)
    edges = 0
    for row in rows:
        expected = expected_answer(row)
        got = orjson.loads(json_response(Asset.from_record(row).answer()).body)
        assert list(got) == list(expected)
        assert strict(got) == strict(expected), row["id"]
        edges += row["user_id"] == USER
    assert edges == len(EDGES)


def test_an_asset_is_read_by_position_in_the_order_its_columns_are_selected() -> None:
    """``Asset.from_record`` reads a row's first columns by position: the select list and the
    tuple's fields must name the same columns in the same order, and every statement that makes
    assets must start with that list."""
    from reference.assets import ASSET_COLUMN_COUNT
    from reference.organize import sql as organize_sql
    from reference.search.sql import PAGE_SQL, TEXT_PAGE_SQL
    from reference.workspace import sql as workspace_sql
    from reference.workspace.sql import JOINED_COLUMN_COUNT, JOINED_COLUMNS

    selected = [c.strip().removeprefix("a.") for c in ASSET_COLUMNS.split(",")]
    assert selected == list(Asset._fields)
    assert len(selected) == ASSET_COLUMN_COUNT
    joined = [c.strip().split(" as ")[-1].split(".")[-1] for c in JOINED_COLUMNS.split(",")]
    assert joined == ["project_title", "job_quality", "job_type", "job_model_type", "job_metadata"]
    assert len(joined) == JOINED_COLUMN_COUNT
    statements = [
        *PAGE_SQL.values(),
        workspace_sql.PAGE_ALL,
        workspace_sql.PAGE_ALL_AFTER,
        workspace_sql.PAGE_SESSION,
        workspace_sql.PAGE_SESSION_AFTER,
        workspace_sql.ONE_ASSET,
        *(
            v
            for k, v in vars(organize_sql).items()
            if k.isupper() and k != "ASSET_COLUMNS" and ASSET_COLUMNS in str(v)
        ),
    ]
    for sql in statements:
        assert sql.split("select", 1)[1].lstrip().startswith(ASSET_COLUMNS), sql
    # A text page's rows are its matches' (selected with the asset's columns first), then the
    # total.
    for sql in TEXT_PAGE_SQL.values():
        assert f"select {ASSET_COLUMNS}, " in sql
        assert "select p.*, c.total from counted c left join lateral (" in sql
        assert "select m.* from matches m" in sql
