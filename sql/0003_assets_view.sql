-- One relation for "the user's assets", images and videos together, as the plan's UnifiedAsset.
-- A UNION ALL view: predicates and ORDER BY ... LIMIT push down into each branch, where the
-- per-table indexes serve them (Merge Append), so nothing is materialised.
create view assets as
select 'image'::text       as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, null::real as duration_s, metadata, created_at
from images
union all
select 'video'::text       as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, duration_s, metadata, created_at
from videos;
