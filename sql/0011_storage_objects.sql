-- Stored objects without a file per object (issue 16): like Supabase's storage.objects, a row
-- maps bucket/name to its content, and the bytes live once per distinct content under
-- {STORAGE_DIR}/.blobs/{h[:2]}/{h}, named by h, the blake2b-128 hex digest that is also the
-- object's ETag (reference/urls/object_store.py). A million assets are two million rows and a
-- few dozen blob files.
--
-- Only the key: a blob shared by 100,000 names is kept when one of them is deleted (no blob
-- garbage collection, so no index on blob).

create table if not exists storage_objects (
    bucket      text not null,
    name        text not null,
    blob        text not null,
    size        integer not null,
    created_at  timestamptz not null default now(),
    primary key (bucket, name)
);
