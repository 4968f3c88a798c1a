-- Text search at 1,000,000 assets (issue 16): the folded prompt is stored, not computed per row.
--
-- Every prompt test computes `search_fold(prompt)` (0009): the trigram index's recheck of each
-- candidate, every row a sort-index walk passes past the count cap, and every row a short query
-- scans. At 1,000,000 assets that fold was more than half of a row's cost: the heavy user's walk
-- of the date index to `knight`'s first page took 2.4 ms with the fold and 1.0 ms reading a
-- stored column; a rare two-letter query's scan of the images, 725 ms against 380 ms.
--
-- `prompt_fold` is a stored generated column (PostgreSQL keeps it equal to `search_fold(prompt)`
-- on every insert and update, so no code writes it), the `assets` view exposes it, and the
-- trigram indexes move to it. Adding the column rewrites both tables once (36 s for 1,000,000
-- images); the trigram indexes are dropped first, so the rewrite does not build them twice.
-- 0015 gives the column its statistics and vacuums the rewritten tables.
--
-- One transaction: the trigram indexes depend on extensions some servers lack (as 0009). On a
-- live database, add the column and build its indexes in a maintenance window: the rewrite
-- holds an exclusive lock on each table while it runs.

drop index if exists idx_images_user_fold_trgm;
drop index if exists idx_videos_user_fold_trgm;
drop index if exists idx_images_fold_trgm;
drop index if exists idx_videos_fold_trgm;

alter table images add column if not exists prompt_fold text
    generated always as (search_fold(prompt)) stored;
alter table videos add column if not exists prompt_fold text
    generated always as (search_fold(prompt)) stored;

create or replace view assets as
select 'image'::text       as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, null::real as duration_s, metadata, created_at,
       prompt_fold
from images
union all
select 'video'::text       as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, duration_s, metadata, created_at,
       prompt_fold
from videos;

do $$
begin
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        if exists (select 1 from pg_extension where extname = 'btree_gin') then
            create index if not exists idx_images_user_prompt_fold_trgm
                on images using gin (user_id, prompt_fold gin_trgm_ops)
                with (gin_pending_list_limit = 1024);
            create index if not exists idx_videos_user_prompt_fold_trgm
                on videos using gin (user_id, prompt_fold gin_trgm_ops)
                with (gin_pending_list_limit = 1024);
        else
            create index if not exists idx_images_prompt_fold_trgm
                on images using gin (prompt_fold gin_trgm_ops)
                with (gin_pending_list_limit = 1024);
            create index if not exists idx_videos_prompt_fold_trgm
                on videos using gin (prompt_fold gin_trgm_ops)
                with (gin_pending_list_limit = 1024);
        end if;
    end if;
end
$$;
