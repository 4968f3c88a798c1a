"""The workspace feature's SQL: pages of the assets view, newest first, with a keyset cursor."""

from __future__ import annotations

from typing import Final

from reference.assets import ASSET_COLUMNS

#: The project's title and the generating job's fields, beside the asset's own columns.
JOINED_COLUMNS: Final = (
    "p.title as project_title, j.quality as job_quality, j.job_type, "
    "j.model_type as job_model_type, j.metadata as job_metadata"
)
JOINED_COLUMN_COUNT: Final = JOINED_COLUMNS.count(",") + 1
_SELECT: Final = f"""
select {ASSET_COLUMNS}, {JOINED_COLUMNS}
from assets a
left join projects p on p.id = a.project_id
left join jobs j on j.id = (a.metadata->>'job_id')::uuid
"""  # noqa: S608
_ORDER: Final = "order by a.created_at desc, a.id desc limit $2"
# The partial index's predicate must appear literally (a bound parameter cannot match it).
_SESSION: Final = (
    "and a.created_at >= $3 and (a.metadata->>'workspace_dismissed') IS DISTINCT FROM 'true'"
)
_AFTER: Final = "and (a.created_at, a.id) < ($4::timestamptz, $5::uuid)"

PAGE_ALL: Final = f"{_SELECT} where a.user_id = $1 {_ORDER}"
PAGE_ALL_AFTER: Final = (
    f"{_SELECT} where a.user_id = $1 and (a.created_at, a.id) < ($3::timestamptz, $4::uuid) "
    f"{_ORDER}"
)
PAGE_SESSION: Final = f"{_SELECT} where a.user_id = $1 {_SESSION} {_ORDER}"
PAGE_SESSION_AFTER: Final = f"{_SELECT} where a.user_id = $1 {_SESSION} {_AFTER} {_ORDER}"
ONE_ASSET: Final = f"{_SELECT} where a.id = $1 and a.user_id = $2"
