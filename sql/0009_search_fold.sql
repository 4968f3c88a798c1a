-- Search that stays flat (issue 16): a prompt is matched through a folded form that is cheap
-- to compute, so testing a row costs a tenth of what ILIKE costs.
--
-- ILIKE lowercases the prompt of every row it tests with the server's ctype (wide characters,
-- one library call each): about 6 us for a 140-character prompt on this machine class, 13x a
-- byte-wise fold. The trigram index's recheck and every row a sort-index walk passes paid it,
-- and at 1,000,000 assets a text search tests thousands of rows.
--
-- search_fold(prompt) is lower(prompt); for an ASCII prompt (octet length = character length)
-- it is computed byte by byte under "C", which gives the same text in every ctype but the
-- Turkic ones (dotless i). `search_fold(prompt) like lower(pattern)` is `prompt ilike pattern`
-- (ILIKE lowercases both sides and matches as LIKE does), and `strpos(search_fold(prompt),
-- lower(q)) > 0` is the same test for a literal q. Not STRICT, so the planner inlines it, in
-- the queries and in the index expressions alike.
--
-- One transaction, as 0004: the trigram indexes depend on extensions some servers lack. On a
-- live database build the new indexes CONCURRENTLY by hand first.

create function search_fold(prompt text) returns text
language sql immutable parallel safe
as $$
    select case when octet_length(prompt) = char_length(prompt)
                then lower(prompt collate "C") else lower(prompt) end
$$;

drop index if exists idx_images_user_prompt_trgm;
drop index if exists idx_videos_user_prompt_trgm;
drop index if exists idx_images_prompt_trgm;
drop index if exists idx_videos_prompt_trgm;

do $$
begin
    if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        if exists (select 1 from pg_extension where extname = 'btree_gin') then
            create index idx_images_user_fold_trgm
                on images using gin (user_id, search_fold(prompt) gin_trgm_ops);
            create index idx_videos_user_fold_trgm
                on videos using gin (user_id, search_fold(prompt) gin_trgm_ops);
        else
            create index idx_images_fold_trgm on images using gin (search_fold(prompt) gin_trgm_ops);
            create index idx_videos_fold_trgm on videos using gin (search_fold(prompt) gin_trgm_ops);
        end if;
    end if;
end
$$;

-- Statistics of the new index expression, for the planner's estimate of a prompt match.
analyze images;
analyze videos;
