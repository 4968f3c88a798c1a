-- migrate: no-transaction
-- After 0014's rewrite of images and videos: the folded prompt's statistics, and a vacuum.
--
-- The column's statistics keep ten common values and ten histogram bounds, as 0013 set for the
-- index expression it replaces: every text search's plan runs its LIKE over them (12% of the
-- database's CPU for `q=knight` at the plan's scale with the default 100 of each).
--
-- A rewritten table starts with an empty visibility map, and a rewrite is not the kind of change
-- that wakes autovacuum: until a vacuum, every index-only scan reads the heap too (a capped
-- count at 1,000,000 assets: 0.7 ms with the map, 28 ms without). So the tables are vacuumed
-- here, which a transaction cannot do. A vacuum marks a page all-visible only once its rows'
-- commit is on disk (it reads the commit hint bits, which wait for the WAL flush): on a server
-- with `synchronous_commit = off`, as the harness's throwaway cluster runs, that can be after
-- this vacuum, which then marks nothing. This session's statements commit synchronously, so the
-- first of them flushes the WAL past 0014's commit.

set synchronous_commit = on;
alter table images alter column prompt_fold set statistics 10;
alter table videos alter column prompt_fold set statistics 10;
vacuum (analyze) images;
vacuum (analyze) videos;
