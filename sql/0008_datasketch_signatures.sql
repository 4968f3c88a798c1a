-- Stored MinHash signatures become datasketch's (MinHash "affine32", same permutation count and
-- seed; reference/organize/dedup.py). Signatures of the earlier hash family cannot share an LSH
-- index with them: drop them, and every reader recomputes and stores what is missing.
truncate asset_signatures;
