"""An asset's JSON built by PostgreSQL, spliced into the response without Python per field.

:data:`ASSET_JSON` renders exactly what :meth:`reference.assets.Asset.to_json` returns, in the
same order and with the same spelling of every value (``created_at`` as ``isoformat()`` writes
it, ``duration_s`` as Python prints the float of a ``real``), so a page can carry it as
``orjson.Fragment`` text: no record decoded into a dict and encoded again.
"""

from __future__ import annotations

from typing import Final

import orjson

#: ``isoformat()`` of a UTC datetime: microseconds only when there are some.
_CREATED_AT: Final = """to_char(a.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || case when date_trunc('second', a.created_at) = a.created_at then ''
            else to_char(a.created_at at time zone 'UTC', '.US') end || '+00:00'"""
#: A ``real`` widened exactly, printed shortest (Python's ``repr``), a whole number with ``.0``.
_DURATION: Final = """(case when a.duration_s::float8 = trunc(a.duration_s::float8)
             and abs(a.duration_s::float8) < 1e16
        then trunc(a.duration_s::float8)::bigint::text || '.0'
        else a.duration_s::float8::text end)::json"""
_FIELDS: Final = f"""'id', a.id, 'type', a.type, 'prompt', a.prompt, 'status', a.status,
    'quality', a.quality, 'model_type', a.model_type, 'project_id', a.project_id,
    'job_id', a.metadata->>'job_id',
    'dismissed', coalesce(a.metadata->'workspace_dismissed' in ('true', '"true"'), false),
    'duration_s', {_DURATION}, 'metadata', coalesce(nullif(a.metadata, 'null'), '{{}}'),
    'created_at', {_CREATED_AT}"""

#: The asset of alias ``a`` as JSON text (``json_build_object`` ends with ``}``).
ASSET_JSON: Final = f"json_build_object({_FIELDS})::text"


def asset_json_and(pairs: str) -> str:
    """The asset's JSON text followed by more ``'key', expression`` pairs (literal SQL only)."""
    return f"json_build_object({_FIELDS},\n    {pairs})::text"


def extended(item: str, **fields: object) -> orjson.Fragment:
    """``item`` (a JSON object's text) with ``fields`` appended, as a fragment of the answer."""
    if not fields:
        return orjson.Fragment(item)
    tail = orjson.dumps(fields)  # '{"k":v,...}'
    return orjson.Fragment(item[:-1].encode() + b"," + tail[1:])
