"""The workspace feature's SQL: pages of the assets view, newest first, with a keyset cursor."""

from __future__ import annotations

from typing import Final

from reference.asset_json import asset_json_and
from reference.assets import ASSET_COLUMNS

_JOB: Final = """case when j.job_type is not null then json_build_object(
        'quality', j.quality, 'job_type', j.job_type, 'model_type', j.model_type,
        'metadata', j.metadata) end"""
#: ``item``: the asset's answer without its URLs, built by PostgreSQL (see asset_json).
_ITEM: Final = asset_json_and(f"'project_title', p.title, 'job', {_JOB}")
_SELECT: Final = f"""
select {ASSET_COLUMNS}, {_ITEM} as item
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
