-- migrate: no-transaction
-- Search that stays flat (issue 16), second part: a text search with a quality or model filter,
-- past the count cap, walks the newest of the user's rows of that quality or model only.
--
-- Past SEARCH_COUNT_CAP matches a text page walks a date index and tests each row it passes
-- (reference/search/sql.py): about 51 / (share of rows that match) rows, whatever the history's
-- size. A filter makes the share small: `knight` with quality=high matches 0.5% of the rows
-- (11,000 rows walked per page), with model=SDXL 0.2% (22,000). Walking only the rows of that
-- quality or model brings both back to the few thousand rows of a plain text search. Status
-- already has (user_id, status, created_at) from 0002; type is the table.
--
-- Not-dismissed rows only, with the literal predicate the queries repeat (0002), and the
-- keyset tie-break (id) so a page is one index range.

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_user_quality_created_active
    ON images (user_id, (quality COLLATE "C"), created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_user_quality_created_active
    ON videos (user_id, (quality COLLATE "C"), created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_images_user_model_created_active
    ON images (user_id, (COALESCE(model_type, '') COLLATE "C"), created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_videos_user_model_created_active
    ON videos (user_id, (COALESCE(model_type, '') COLLATE "C"), created_at DESC, id DESC)
    WHERE (metadata->>'workspace_dismissed') IS DISTINCT FROM 'true';
