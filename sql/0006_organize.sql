-- Smart organization: stored MinHash signatures, and a per-user version that every change to
-- what near-duplicate detection sees (an asset added, deleted, dismissed or restored, or its
-- prompt edited) bumps in the same transaction. Service processes cache a user's LSH index
-- under that version, so all of them answer from the database's state, never their own.

create table asset_signatures (
    asset_id    uuid primary key,
    user_id     uuid not null,
    -- 64-bit hash of the normalized prompt: equal keys mean equal normalized text.
    text_key    bigint not null,
    -- MinHash signature: 128 little-endian uint32 (reference/dedup.py).
    signature   bytea not null check (octet_length(signature) = 512),
    computed_at timestamptz not null default now()
);

create index asset_signatures_user on asset_signatures (user_id);

create table organize_versions (
    user_id uuid primary key,
    version bigint not null
);

-- Statement-level triggers with transition tables: one COPY of 100,000 rows bumps each user
-- once. Users are locked in id order so concurrent writers cannot deadlock on the versions.
create function organize_assets_inserted() returns trigger
language plpgsql as $$
begin
    insert into organize_versions as v (user_id, version)
    select distinct user_id, 1 from new_rows order by user_id
    on conflict (user_id) do update set version = v.version + 1;
    return null;
end
$$;

create function organize_assets_deleted() returns trigger
language plpgsql as $$
begin
    delete from asset_signatures s using old_rows o where s.asset_id = o.id;
    insert into organize_versions as v (user_id, version)
    select distinct user_id, 1 from old_rows order by user_id
    on conflict (user_id) do update set version = v.version + 1;
    return null;
end
$$;

create function organize_assets_updated() returns trigger
language plpgsql as $$
begin
    delete from asset_signatures s
    using new_rows n join old_rows o on o.id = n.id
    where s.asset_id = n.id
      and (n.prompt is distinct from o.prompt or n.user_id is distinct from o.user_id);
    insert into organize_versions as v (user_id, version)
    select distinct u.user_id, 1
    from new_rows n
    join old_rows o on o.id = n.id
    cross join lateral (values (n.user_id), (o.user_id)) as u (user_id)
    where n.prompt is distinct from o.prompt
       or n.user_id is distinct from o.user_id
       or (n.metadata->>'workspace_dismissed') is distinct from (o.metadata->>'workspace_dismissed')
    order by u.user_id
    on conflict (user_id) do update set version = v.version + 1;
    return null;
end
$$;

create trigger images_organize_insert after insert on images
    referencing new table as new_rows for each statement execute function organize_assets_inserted();
create trigger images_organize_delete after delete on images
    referencing old table as old_rows for each statement execute function organize_assets_deleted();
create trigger images_organize_update after update on images
    referencing old table as old_rows new table as new_rows
    for each statement execute function organize_assets_updated();

create trigger videos_organize_insert after insert on videos
    referencing new table as new_rows for each statement execute function organize_assets_inserted();
create trigger videos_organize_delete after delete on videos
    referencing old table as old_rows for each statement execute function organize_assets_deleted();
create trigger videos_organize_update after update on videos
    referencing old table as old_rows new table as new_rows
    for each statement execute function organize_assets_updated();

-- The fixtures reload with TRUNCATE, which fires no row or DELETE triggers.
create function organize_assets_truncated() returns trigger
language plpgsql as $$
begin
    truncate asset_signatures;
    update organize_versions set version = version + 1;
    return null;
end
$$;

create trigger images_organize_truncate after truncate on images
    for each statement execute function organize_assets_truncated();
create trigger videos_organize_truncate after truncate on videos
    for each statement execute function organize_assets_truncated();
