-- migrate: no-transaction
-- Text search planning (issue 16): a short sample of the folded prompts for the planner.
--
-- Every text search is planned for its own arguments, and the planner estimates how many rows
-- `search_fold(prompt) like '%...%'` matches by running that LIKE over the statistics of the
-- trigram index's expression: 100 most common values and a 100-bucket histogram of prompts
-- about 140 characters long, stored compressed, so each plan decompressed about 14 kB and ran
-- some 400 LIKEs (images and videos). Profiled with perf at the plan's scale, that estimate was
-- 12% of the database's CPU for `q=knight` and about a third of its planning.
--
-- With ten values and ten buckets, the arrays are small enough to be stored uncompressed, and
-- the estimate leans on the heuristic for a substring (`knight`: 2 rows estimated, 99 found at
-- the plan's scale). That costs no plan: the trigram index collects the matches up to the
-- count cap in every case, and a page past the cap is a walk of a sort index that does not use
-- this estimate. The first two statements are for the indexes with the user id (btree_gin),
-- the last two for the plain ones built without it.

alter index if exists idx_images_user_fold_trgm alter column 2 set statistics 10;
alter index if exists idx_videos_user_fold_trgm alter column 2 set statistics 10;
alter index if exists idx_images_fold_trgm alter column 1 set statistics 10;
alter index if exists idx_videos_fold_trgm alter column 1 set statistics 10;
analyze images;
analyze videos;
