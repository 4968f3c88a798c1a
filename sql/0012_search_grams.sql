-- Short queries that stay flat (issue 16): a query without a run of three letters or digits
-- ("zz", "8k", "a b") has no trigram to look up, so its text page tested the user's rows one by
-- one until it had cap + 1 matches. A frequent one stops early; a rare one read the whole
-- history: at 1,000,000 assets `q=zz` took about 1 s, 100x its time at 10,000.
--
-- search_grams(folded) is every character and every pair of adjacent characters of the folded
-- prompt (repeats included; GIN keeps each key once). A prompt that contains q contains every
-- character and pair of q, so `search_grams(search_fold(prompt)) @> search_grams(search_fold(q))`
-- is a necessary test the GIN index answers, and strpos, as before, the exact one. The planner
-- weighs the two ways with the statistics of the index expression: the index for a rare pair,
-- the user's rows for a frequent one (the first cap + 1 matches come soon).
--
-- Built from core functions only (no extension), about 30 us a prompt of 140 characters.
-- One transaction, as 0009: the index with the user id depends on btree_gin. On a live
-- database build the indexes CONCURRENTLY by hand first.

create function search_grams(folded text) returns text[]
language sql immutable parallel safe strict
as $$
    select string_to_array(folded, null)
        || array(select m[1] from regexp_matches(folded, '..', 'g') m)
        || array(select m[1] from regexp_matches(substr(folded, 2), '..', 'g') m)
$$;

do $$
begin
    if exists (select 1 from pg_extension where extname = 'btree_gin') then
        create index idx_images_user_fold_grams
            on images using gin (user_id, search_grams(search_fold(prompt)));
        create index idx_videos_user_fold_grams
            on videos using gin (user_id, search_grams(search_fold(prompt)));
    else
        create index idx_images_fold_grams on images using gin (search_grams(search_fold(prompt)));
        create index idx_videos_fold_grams on videos using gin (search_grams(search_fold(prompt)));
    end if;
end
$$;

-- Statistics of the new index expression, for the planner's estimate of a short match.
analyze images;
analyze videos;
