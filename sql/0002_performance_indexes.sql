-- migrate: no-transaction
-- The plan's performance migration (supabase/migrations/20250108000003), corrected:
--  * CREATE INDEX CONCURRENTLY cannot run inside a transaction block, so this file runs
--    statement by statement; the runner checks pg_index.indisvalid afterwards and rebuilds
--    any index a failed earlier attempt left invalid.
--  * The plan's partial predicate `(metadata->>'workspace_dismissed')::boolean = false`
--    leaves out every row where the key is absent (most rows), and those are exactly the
--    not-dismissed ones. A missing key means "not dismissed": IS DISTINCT FROM 'true'.
--    Queries must repeat this literal predicate; a bound `$n` cannot match a partial index.
--  * The partial index carries `id` as the keyset tie-break, so a page is one index range.

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_user_created_dismissed
    ON images (user_id, created_at, (metadata->>'workspace_dismissed'));

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_user_created_dismissed
    ON videos (user_id, created_at, (metadata->>'workspace_dismissed'));

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_job_id
    ON images ((metadata->>'job_id'));

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_job_id
    ON videos ((metadata->>'job_id'));

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_user_status_created
    ON images (user_id, status, created_at DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_user_status_created
    ON videos (user_id, status, created_at DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_workspace_active
    ON images (user_id, created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_workspace_active
    ON videos (user_id, created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';

-- Not in the plan: the "all" workspace mode pages every asset newest first, and deleting an
-- asset checks the jobs that reference it; neither should scan a table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_user_created_id
    ON images (user_id, created_at DESC, id DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_user_created_id
    ON videos (user_id, created_at DESC, id DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_image_id ON jobs (image_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_jobs_video_id ON jobs (video_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_projects_user ON projects (user_id);
