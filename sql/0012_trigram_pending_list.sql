-- Text search after dismisses (issue 16): a smaller pending list for the trigram indexes.
--
-- A GIN index defers the keys of changed rows to its pending list (fastupdate), and every scan
-- of the index reads that whole list until it is merged (by vacuum, autoanalyze, or when it
-- outgrows gin_pending_list_limit, 4 MB by default). Dismissing rewrites a row, so each
-- dismissed asset adds its hundred-odd trigrams to the list. Measured at the plan's scale
-- after dismissing and restoring 2,600 assets (the heavy user's `q=knight`, one statement):
-- with 4 MB, 396 pages pending and 16.5 ms a search instead of about 1.5 ms; with 1 MB, the
-- list never passes 128 pages (8 pending after that run, 2.0 ms), and the two updates took
-- 667 ms instead of 480 (a flush is more frequent, and each merges fewer keys).
--
-- Searches far outnumber dismisses, so the list is bounded at 1 MB. `fastupdate = off`
-- (no list) made the same updates 12x slower; 512 kB, 1.6x.

alter index if exists idx_images_user_fold_trgm set (gin_pending_list_limit = 1024);
alter index if exists idx_videos_user_fold_trgm set (gin_pending_list_limit = 1024);
alter index if exists idx_images_fold_trgm set (gin_pending_list_limit = 1024);
alter index if exists idx_videos_fold_trgm set (gin_pending_list_limit = 1024);
