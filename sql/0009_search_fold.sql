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
-- One transaction, as 0004.

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

-- This file once also built trigram indexes on search_fold(prompt); 0014 stores the folded
-- prompt as a column and indexes that instead, dropping these. A fresh database no longer builds
-- them (at 1,000,000 assets they were a long step of the data build, for nothing). Databases that
-- applied the earlier text are accepted (the checksum below): once 0014 has run, both texts leave
-- the same schema.
-- migrate: supersedes 38f6188c4a38266b
