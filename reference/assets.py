"""The unified asset: closed vocabularies, the row shape every feature reads, and its JSON."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple
from uuid import UUID

import asyncpg


class ContentType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class Quality(StrEnum):
    FAST = "fast"
    HIGH = "high"


class ModelType(StrEnum):
    """Stored values of ``model_type``; NULL is the plain model."""

    SDXL = "SDXL"
    WAN = "WAN"
    ENHANCED = "Enhanced"


class Status(StrEnum):
    COMPLETED = "completed"
    GENERATING = "generating"
    FAILED = "failed"


#: The select list every feature uses for an asset of the ``assets`` view (alias ``a``).
ASSET_COLUMNS: Final = (
    "a.type, a.id, a.user_id, a.project_id, a.prompt, a.status, a.quality, a.model_type, "
    "a.storage_path, a.thumbnail_path, a.duration_s, a.metadata, a.created_at"
)


#: How many columns :data:`ASSET_COLUMNS` selects (a row's asset is its first this many).
ASSET_COLUMN_COUNT: Final = ASSET_COLUMNS.count(",") + 1

#: ``ContentType(value)`` as a dictionary lookup (an enum call costs more than the rest of a row).
_CONTENT_TYPES: Final = {member.value: member for member in ContentType}


class Asset(NamedTuple):
    """One asset, immutable. A named tuple rather than a frozen dataclass: every page builds 50
    of them, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost
    more than decoding the row."""

    type: ContentType
    id: UUID
    user_id: UUID
    project_id: UUID | None
    prompt: str
    status: str
    quality: str
    model_type: str | None
    storage_path: str
    thumbnail_path: str
    duration_s: float | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Asset:
        """The asset of a row whose select list starts with :data:`ASSET_COLUMNS`, in that
        order (every statement that makes assets does; the joined columns come after). Read by
        position: a lookup by name cost more than the rest of building the asset."""
        (
            content_type, id_, user_id, project_id, prompt, status, quality, model_type,
            storage_path, thumbnail_path, duration_s, metadata, created_at,
        ) = record[:ASSET_COLUMN_COUNT]  # fmt: skip
        return cls(
            _CONTENT_TYPES[content_type],
            id_,
            user_id,
            project_id,
            prompt,
            status,
            quality,
            model_type,
            storage_path,
            thumbnail_path,
            duration_s,
            metadata or {},
            created_at,
        )

    @property
    def dismissed(self) -> bool:
        """A missing key means not dismissed (the plan's partial index got this wrong)."""
        # Exactly what SQL's `metadata->>'workspace_dismissed' = 'true'` means.
        value = self.metadata.get("workspace_dismissed")
        return value is True or value == "true"

    @property
    def job_id(self) -> str | None:
        value = self.metadata.get("job_id")
        return None if value is None else str(value)

    def answer(self) -> dict[str, Any]:
        """The asset as the API writes it, for ``orjson``: the content type and the creation time
        are left as objects, which orjson writes as the enum's value and ``isoformat()`` would
        (the ids are asyncpg's own UUID type, which orjson does not know). A page is one dictionary
        per asset and one ``orjson.dumps``; PostgreSQL building the same JSON field by field
        cost more CPU than the whole query without it."""
        return {
            "id": str(self.id),
            "type": self.type,
            "prompt": self.prompt,
            "status": self.status,
            "quality": self.quality,
            "model_type": self.model_type,
            "project_id": None if self.project_id is None else str(self.project_id),
            "job_id": self.job_id,
            "dismissed": self.dismissed,
            "duration_s": self.duration_s,
            "metadata": self.metadata,
            "created_at": self.created_at,
        }
