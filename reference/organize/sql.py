"""The organize feature's SQL, one constant per statement."""

from __future__ import annotations

from typing import Final

from reference.assets import ASSET_COLUMNS

SELECT_VERSION: Final = "select version from organize_versions where user_id = $1"

#: One snapshot of what near-duplicate detection sees: the user's not-dismissed assets with
#: their stored signatures (NULL where none is stored yet).
SELECT_INDEX_ROWS: Final = """
select a.id, a.type, a.created_at, a.prompt, a.quality, a.model_type, s.text_key, s.signature
from assets a
left join asset_signatures s on s.asset_id = a.id
where a.user_id = $1
  and (a.metadata->>'workspace_dismissed') is distinct from 'true'
"""

COUNT_MISSING: Final = """
select count(*) from assets a
where not exists (select 1 from asset_signatures s where s.asset_id = a.id)
"""
SELECT_MISSING: Final = """
select a.id, a.user_id, a.prompt from assets a
where not exists (select 1 from asset_signatures s where s.asset_id = a.id)
"""
#: Every distinct prompt: a fresh load's signatures are computed once per prompt, while the
#: indexes are built (the tables, not the view: it may not exist yet).
SELECT_DISTINCT_PROMPTS: Final = "select prompt from images union select prompt from videos"
#: For the bulk backfill: prompts cannot change between the read and the COPY (readers go on).
#: Asked without waiting, and again until it is free (see ``store_signatures``).
LOCK_PROMPTS_NOWAIT: Final = "lock table images, videos in share mode nowait"
SIGNATURE_COLUMNS: Final = ("asset_id", "user_id", "text_key", "signature")
SELECT_PROMPTS: Final = "select a.id, a.prompt from assets a where a.id = any($1::uuid[])"

#: Stores a signature only if the prompt it was computed from is still the asset's prompt.
INSERT_SIGNATURES: Final = """
insert into asset_signatures (asset_id, user_id, text_key, signature)
select u.id, a.user_id, u.text_key, u.signature
from unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[])
    as u (id, prompt, text_key, signature)
join assets a on a.id = u.id and a.prompt = u.prompt
on conflict (asset_id) do nothing
"""

SELECT_ASSET_TAG_FIELDS: Final = """
select a.prompt, a.quality, a.model_type from assets a where a.id = $1 and a.user_id = $2
"""

ASSETS_BY_ID: Final = f"""
select {ASSET_COLUMNS} from assets a where a.user_id = $1 and a.id = any($2::uuid[])
"""  # noqa: S608 - composed from constants only
