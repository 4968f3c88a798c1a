"""JSON Schemas of response bodies shared by several features (OpenAPI 3.0 dialect)."""

from __future__ import annotations

from typing import Any, Final

STRING: Final = {"type": "string"}
NULLABLE_STRING: Final = {"type": "string", "nullable": True}
UUID_STRING: Final = {"type": "string", "format": "uuid"}
INTEGER: Final = {"type": "integer"}
CURSOR: Final = {**NULLABLE_STRING, "description": "opaque; null on the last page"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these properties, the ``required`` ones always present."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


ASSET_FIELDS: Final = {
    "id": UUID_STRING,
    "type": {"type": "string", "enum": ["image", "video"]},
    "prompt": STRING,
    "status": STRING,
    "quality": STRING,
    "model_type": NULLABLE_STRING,
    "duration_s": {"type": "number", "nullable": True},
    "metadata": {"type": "object"},
    "created_at": {"type": "string", "format": "date-time"},
}
ASSET: Final = obj(
    {
        **ASSET_FIELDS,
        "project_id": {**UUID_STRING, "nullable": True},
        "job_id": NULLABLE_STRING,
        "dismissed": {"type": "boolean"},
    },
    {"thumbnail_url": NULLABLE_STRING, "high_res_url": NULLABLE_STRING},
)
OPERATION: Final = obj(
    {
        "id": UUID_STRING,
        "kind": STRING,
        "status": STRING,
        "undoable": {"type": "boolean"},
        "total": INTEGER,
        "done": INTEGER,
        "not_found": array(UUID_STRING),
        "not_found_jobs": array(STRING),
        "created_at": STRING,
        "finished_at": NULLABLE_STRING,
    },
    {"state": {"nullable": True}, "files_pending": INTEGER},
)
