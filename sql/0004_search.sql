-- Search (issue 4): substring search on prompts, the sorts of the plan's filterAssets, and the
-- saved search state.
--
-- One transaction, not CONCURRENTLY: the trigram indexes depend on extensions that some servers
-- lack (the pgserver wheel has no contrib), so they are built in a DO block, and a DO block is a
-- transaction. On a live database, build the same indexes CONCURRENTLY by hand first; the
-- IF NOT EXISTS below then makes this migration a quick no-op.
--
-- Sort indexes carry the keyset tie-break (id) and the exact sort expressions the queries use:
-- text in code-point order (COLLATE "C"), a NULL model as ''.

create table if not exists search_state (
    user_id     uuid primary key,
    state       jsonb not null,
    updated_at  timestamptz not null default now()
);

create index if not exists idx_images_user_prompt_c
    on images (user_id, (prompt collate "C"), id);
create index if not exists idx_videos_user_prompt_c
    on videos (user_id, (prompt collate "C"), id);

create index if not exists idx_images_user_quality_c
    on images (user_id, (quality collate "C"), id);
create index if not exists idx_videos_user_quality_c
    on videos (user_id, (quality collate "C"), id);

create index if not exists idx_images_user_model_c
    on images (user_id, (coalesce(model_type, '') collate "C"), id);
create index if not exists idx_videos_user_model_c
    on videos (user_id, (coalesce(model_type, '') collate "C"), id);

-- Counting a filtered search (type, quality, model, status, dates) of the workspace: an
-- index-only scan of the user's not-dismissed rows, with the filtered columns carried along.
-- Without it, quality=fast at 100,000 assets reads 60,000 heap rows (about 65 ms, vs 5 ms).
create index if not exists idx_images_user_search_active
    on images (user_id, created_at) include (quality, model_type, status)
    where (metadata->>'workspace_dismissed') is distinct from 'true';
create index if not exists idx_videos_user_search_active
    on videos (user_id, created_at) include (quality, model_type, status)
    where (metadata->>'workspace_dismissed') is distinct from 'true';

-- Substring search needs pg_trgm (and btree_gin, for user_id in the same GIN index); the index
-- itself is 0009's, on search_fold(prompt). This file once also built a trigram index on the raw
-- prompt, which 0009 drops: a fresh database no longer builds it (at 1,000,000 assets that was
-- the longest step of the data build). Databases that applied the earlier text are accepted (the
-- checksum below): once 0009 has run, both texts leave the same schema. Without pg_trgm the
-- service detects that no index exists and reports the limitation.
-- migrate: supersedes 9f3591bfaae3f12d
do $$
begin
    if exists (select 1 from pg_available_extensions where name = 'pg_trgm') then
        create extension if not exists pg_trgm;
        if exists (select 1 from pg_available_extensions where name = 'btree_gin') then
            create extension if not exists btree_gin;
        end if;
    else
        raise notice 'pg_trgm is not available: prompt search will scan each user''s rows';
    end if;
end
$$;
