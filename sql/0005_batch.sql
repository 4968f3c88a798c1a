-- Batch operations: trash, operation log (undo/redo, progress, idempotency), purge queue.
--
-- Trashed assets are moved out of `images` and `videos` into their own tables, so every query
-- on `images`, `videos` or the `assets` view (workspace, search, organize) leaves them out with
-- no extra predicate. `job_ids` keeps the jobs whose `image_id`/`video_id` pointed at the asset
-- (the foreign key clears them on delete), so a restore can put them back.

create table trashed_images (
    id              uuid primary key,
    user_id         uuid not null,
    project_id      uuid,
    prompt          text not null,
    status          text not null,
    quality         text not null,
    model_type      text,
    storage_path    text not null,
    thumbnail_path  text not null,
    metadata        jsonb,
    created_at      timestamptz not null,
    deleted_at      timestamptz not null default now(),
    operation_id    uuid,
    job_ids         uuid[] not null default '{}'
);

create table trashed_videos (
    id              uuid primary key,
    user_id         uuid not null,
    project_id      uuid,
    prompt          text not null,
    status          text not null,
    quality         text not null,
    model_type      text,
    storage_path    text not null,
    thumbnail_path  text not null,
    duration_s      real,
    metadata        jsonb,
    created_at      timestamptz not null,
    deleted_at      timestamptz not null default now(),
    operation_id    uuid,
    job_ids         uuid[] not null default '{}'
);

create index idx_trashed_images_user_deleted on trashed_images (user_id, deleted_at desc, id desc);
create index idx_trashed_videos_user_deleted on trashed_videos (user_id, deleted_at desc, id desc);
create index idx_trashed_images_deleted on trashed_images (deleted_at);
create index idx_trashed_videos_deleted on trashed_videos (deleted_at);

create view trashed_assets as
select 'image'::text as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, null::real as duration_s, metadata, created_at,
       deleted_at, operation_id
from trashed_images
union all
select 'video'::text as type,
       id, user_id, project_id, prompt, status, quality, model_type,
       storage_path, thumbnail_path, duration_s, metadata, created_at,
       deleted_at, operation_id
from trashed_videos;

-- One row per batch action. `seq` orders a user's undo stack; `target` is where the items are
-- heading ('applied' or 'undone'); `status` is 'running' until every item has reached it, so an
-- interrupted operation is found and resumed. `discarded`: undone, then a newer operation
-- cleared the redo stack.
create table batch_operations (
    id               uuid primary key,
    seq              bigint generated always as identity unique,
    user_id          uuid not null,
    kind             text not null
        check (kind in ('dismiss', 'undismiss', 'delete', 'restore', 'purge')),
    status           text not null default 'running' check (status in ('running', 'done')),
    target           text not null default 'applied' check (target in ('applied', 'undone')),
    discarded        boolean not null default false,
    total            integer not null,
    done             integer not null default 0,
    not_found        uuid[] not null default '{}',
    not_found_jobs   text[] not null default '{}',
    idempotency_key  text,
    request_hash     text,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    finished_at      timestamptz,
    unique (user_id, idempotency_key)
);

create index idx_batch_operations_user_seq on batch_operations (user_id, seq desc);
create index idx_batch_operations_running on batch_operations (seq) where status = 'running';

-- The assets of an operation. `prior` is the state before the forward action (for dismiss:
-- whether metadata was NULL, whether the key was there and its value); `applied` says which
-- side of the operation the asset is on. A chunk changes assets and items in one transaction.
-- No foreign key to batch_operations: items are written only with their operation, and the
-- per-row RI check made recording 10,000 items cost 0.3 s.
create table batch_operation_items (
    operation_id  uuid not null,
    asset_id      uuid not null,
    type          text not null check (type in ('image', 'video')),
    prior         jsonb,
    applied       boolean not null default false,
    primary key (operation_id, asset_id)
);

-- A chunk is the next items not yet at the target, by asset id: one index range.
create index idx_batch_operation_items_pending
    on batch_operation_items (operation_id, applied, asset_id);

-- Files of purged assets still to remove. The asset's rows are gone when a file lands here
-- (in the same transaction), so no row points at a file that is being removed; a failed
-- removal stays, with its attempts and the time of the next try.
create table purge_files (
    id          bigint generated always as identity primary key,
    asset_id    uuid not null,
    user_id     uuid not null,
    bucket      text not null,
    path        text not null,
    attempts    integer not null default 0,
    next_try    timestamptz not null default now(),
    last_error  text,
    created_at  timestamptz not null default now()
);

create index idx_purge_files_next_try on purge_files (next_try);
create index idx_purge_files_asset on purge_files (asset_id);
