"""SQL of the batch feature, one constant per statement, one statement per table where it acts.

Every statement is scoped by ``user_id = $n``. Arrays are bound as ``= any($n::uuid[])``.
"""

from __future__ import annotations

from typing import Final

SELECT_LIVE: Final = """
select 'image' as type, id, metadata->>'job_id' as job_id from images
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
union all
select 'video', id, metadata->>'job_id' from videos
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
"""

SELECT_TRASHED: Final = """
select 'image' as type, id, metadata->>'job_id' as job_id from trashed_images
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
union all
select 'video', id, metadata->>'job_id' from trashed_videos
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
"""

SELECT_DOWNLOAD: Final = """
select 'image' as type, id, quality, model_type, storage_path, metadata, created_at from images
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
union all
select 'video', id, quality, model_type, storage_path, metadata, created_at from videos
where user_id = $1 and (id = any($2::uuid[]) or metadata->>'job_id' = any($3::text[]))
order by created_at, id
"""

# Serialises a user's undo stack: creating an operation clears the redo stack, and undo/redo
# pick the operation at the top; two requests of one user must not interleave there.
LOCK_USER_STACK: Final = "select pg_advisory_xact_lock(hashtextextended('batch:' || $1::uuid, 0))"

# The user's turn, held by whoever runs one of the user's operations, for the operation's life
# (across its chunks; it dies with the connection). Waits are bounded by lock_timeout.
TAKE_USERS_TURN: Final = "select pg_advisory_lock(hashtextextended('batch:' || $1::uuid, 0))"
END_USERS_TURN: Final = "select pg_advisory_unlock(hashtextextended('batch:' || $1::uuid, 0))"

UNFINISHED_OF_USER: Final = """
select * from batch_operations where user_id = $1 and status <> 'done'
"""

USER_OF: Final = "select user_id from batch_operations where id = $1"

# ``$4``: take the operation over even if another worker's lease has not lapsed (at start-up, or
# on request); only ever called by a worker that holds the user's turn.
CLAIM: Final = """
update batch_operations
set lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3)
where id = $1 and status <> 'done'
  and ($4 or lease_owner is null or lease_owner = $2 or lease_expires_at < now())
returning id
"""

MARK_RETRYING: Final = """
update batch_operations
set status = 'retrying', attempts = attempts + 1, last_error = $3, updated_at = now(),
    lease_expires_at = now() + make_interval(secs => $4)
where id = $1 and status <> 'done' and (lease_owner = $2 or lease_owner is null)
"""

ORPHANED_OPERATIONS: Final = """
select id from batch_operations
where status <> 'done' and (lease_expires_at is null or lease_expires_at < now())
order by seq
"""

FIND_BY_KEY: Final = """
select * from batch_operations where user_id = $1 and idempotency_key = $2
"""

DISCARD_REDO: Final = """
update batch_operations set discarded = true
where user_id = $1 and target = 'undone' and not discarded
"""

INSERT_OPERATION: Final = """
insert into batch_operations
    (id, user_id, kind, total, not_found, not_found_jobs, idempotency_key, request_hash,
     lease_owner, lease_expires_at)
values ($1, $2, $3, $4, $5::uuid[], $6::text[], $7, $8,
        $9, now() + make_interval(secs => $10))
on conflict (user_id, idempotency_key) do nothing
returning *
"""

INSERT_ITEMS: Final = """
insert into batch_operation_items (operation_id, asset_id, type)
select $1, unnest($2::uuid[]), unnest($3::text[])
"""

GET_OPERATION: Final = "select * from batch_operations where id = $1 and user_id = $2"

LOCK_OPERATION: Final = "select * from batch_operations where id = $1 for update"

RUNNING_OPERATIONS: Final = "select id from batch_operations where status <> 'done' order by seq"

TOP_OF_UNDO: Final = """
select * from batch_operations
where user_id = $1 and target = 'applied' and not discarded
order by seq desc limit 1
"""

TOP_OF_REDO: Final = """
select * from batch_operations
where user_id = $1 and target = 'undone' and not discarded
order by seq asc limit 1
"""

START_PHASE: Final = """
update batch_operations
set target = $2, status = 'running', done = 0, finished_at = null, updated_at = now(),
    lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4),
    total = (select count(*) from batch_operation_items
             where operation_id = $1 and applied = ($2 = 'undone'))
where id = $1
returning *
"""

NEXT_CHUNK: Final = """
select asset_id, type from batch_operation_items
where operation_id = $1 and applied = $2
order by asset_id
limit $3
for update
"""

# Items a forward dismiss already marked (with their prior state) are skipped: one row version
# per item, not two.
MARK_ITEMS: Final = """
update batch_operation_items set applied = $3
where operation_id = $1 and asset_id = any($2::uuid[]) and applied <> $3
"""

# Every chunk renews the lease: a worker that stops making progress loses it.
ADVANCE: Final = """
update batch_operations
set done = done + $2, status = 'running', updated_at = now(),
    lease_expires_at = now() + make_interval(secs => $3)
where id = $1
"""

FINISH: Final = """
update batch_operations set status = 'done', finished_at = now(), updated_at = now()
where id = $1
returning *
"""

# --- dismiss / undismiss: merge the key, keep every other key; remember what was there -------

_SET_DISMISSED: Final = """
with locked as (
    select t.id, t.metadata from {table} t
    where t.user_id = $2 and t.id = any($3::uuid[])
    for update
), recorded as (
    update batch_operation_items it
    set applied = true,
        prior = jsonb_build_object(
        'null', l.metadata is null,
        'had', coalesce(l.metadata ? 'workspace_dismissed', false),
        'value', l.metadata -> 'workspace_dismissed')
    from locked l
    where it.operation_id = $1 and it.asset_id = l.id
)
update {table} t
set metadata = coalesce(t.metadata, '{{}}'::jsonb)
               || jsonb_build_object('workspace_dismissed', $4::boolean)
from locked l
where t.id = l.id
"""

# Undo puts back only the key (other keys may have changed since); metadata that was NULL and
# holds nothing else becomes NULL again.
_UNSET_DISMISSED: Final = """
update {table} t
set metadata = case
    when (it.prior->>'had')::boolean
        then coalesce(t.metadata, '{{}}'::jsonb)
             || jsonb_build_object('workspace_dismissed', it.prior->'value')
    when (it.prior->>'null')::boolean
         and coalesce(t.metadata - 'workspace_dismissed', '{{}}'::jsonb) = '{{}}'::jsonb
        then null
    else t.metadata - 'workspace_dismissed'
end
from batch_operation_items it
where it.operation_id = $1 and it.asset_id = t.id and it.prior is not null
  and t.user_id = $2 and t.id = any($3::uuid[])
"""

SET_DISMISSED_IMAGES: Final = _SET_DISMISSED.format(table="images")
SET_DISMISSED_VIDEOS: Final = _SET_DISMISSED.format(table="videos")
UNSET_DISMISSED_IMAGES: Final = _UNSET_DISMISSED.format(table="images")
UNSET_DISMISSED_VIDEOS: Final = _UNSET_DISMISSED.format(table="videos")

# --- delete / restore: move rows between the live and the trash tables ---------------------

_IMAGE_COLUMNS: Final = (
    "id, user_id, project_id, prompt, status, quality, model_type, storage_path, "
    "thumbnail_path, metadata, created_at"
)
_VIDEO_COLUMNS: Final = (
    "id, user_id, project_id, prompt, status, quality, model_type, storage_path, "
    "thumbnail_path, duration_s, metadata, created_at"
)

_TRASH: Final = """
with links as (
    select j.{fk} as asset_id, array_agg(j.id) as job_ids from jobs j
    where j.{fk} = any($3::uuid[]) group by j.{fk}
), moved as (
    delete from {table} t where t.user_id = $2 and t.id = any($3::uuid[])
    returning {returning}
)
insert into trashed_{table} ({columns}, deleted_at, operation_id, job_ids)
select {moved_columns}, now(), $1, coalesce(l.job_ids, '{{}}')
from moved m left join links l on l.asset_id = m.id
"""

# The project may have been deleted while the asset was in the trash: the live table's foreign
# key then wants NULL, as ``on delete set null`` would have done. Jobs get their link back only
# where nothing else took the slot.
_UNTRASH: Final = """
with moved as (
    delete from trashed_{table} t where t.user_id = $1 and t.id = any($2::uuid[])
    returning {returning}, t.job_ids
), inserted as (
    insert into {table} ({columns})
    select {restored_columns} from moved m
    returning id
)
update jobs j set {fk} = m.id
from moved m
where j.id = any(m.job_ids) and j.{fk} is null
"""


def _moved(columns: str) -> str:
    return ", ".join(f"m.{c.strip()}" for c in columns.split(","))


def _restored(columns: str) -> str:
    return ", ".join(
        "(select p.id from projects p where p.id = m.project_id)"
        if c.strip() == "project_id"
        else f"m.{c.strip()}"
        for c in columns.split(",")
    )


def _returning(columns: str) -> str:
    return ", ".join(f"t.{c.strip()}" for c in columns.split(","))


TRASH_IMAGES: Final = _TRASH.format(
    table="images",
    fk="image_id",
    columns=_IMAGE_COLUMNS,
    returning=_returning(_IMAGE_COLUMNS),
    moved_columns=_moved(_IMAGE_COLUMNS),
)
TRASH_VIDEOS: Final = _TRASH.format(
    table="videos",
    fk="video_id",
    columns=_VIDEO_COLUMNS,
    returning=_returning(_VIDEO_COLUMNS),
    moved_columns=_moved(_VIDEO_COLUMNS),
)
UNTRASH_IMAGES: Final = _UNTRASH.format(
    table="images",
    fk="image_id",
    columns=_IMAGE_COLUMNS,
    returning=_returning(_IMAGE_COLUMNS),
    restored_columns=_restored(_IMAGE_COLUMNS),
)
UNTRASH_VIDEOS: Final = _UNTRASH.format(
    table="videos",
    fk="video_id",
    columns=_VIDEO_COLUMNS,
    returning=_returning(_VIDEO_COLUMNS),
    restored_columns=_restored(_VIDEO_COLUMNS),
)

# --- purge: the trash rows go, their files join the removal queue, in one transaction ------

PURGE_ROWS: Final = """
with gone as (
    delete from trashed_images t where t.user_id = $1 and t.id = any($2::uuid[])
    returning 'image' as type, t.id, t.quality, t.model_type, t.metadata,
              t.storage_path, t.thumbnail_path
), gone_videos as (
    delete from trashed_videos t where t.user_id = $1 and t.id = any($2::uuid[])
    returning 'video' as type, t.id, t.quality, t.model_type, t.metadata,
              t.storage_path, t.thumbnail_path
)
select * from gone union all select * from gone_videos
"""

# A path that another row of the user (live or trashed) still names is not removed.
STILL_REFERENCED: Final = """
select p from unnest($2::text[]) as p
where exists (select 1 from images where user_id = $1 and (storage_path = p or thumbnail_path = p))
   or exists (select 1 from videos where user_id = $1 and (storage_path = p or thumbnail_path = p))
   or exists (select 1 from trashed_images
              where user_id = $1 and (storage_path = p or thumbnail_path = p))
   or exists (select 1 from trashed_videos
              where user_id = $1 and (storage_path = p or thumbnail_path = p))
"""

ENQUEUE_FILES: Final = """
insert into purge_files (asset_id, user_id, bucket, path)
select unnest($1::uuid[]), $2, unnest($3::text[]), unnest($4::text[])
"""

DUE_FILES: Final = """
select id, asset_id, bucket, path, attempts from purge_files
where next_try <= now() and ($1::uuid[] is null or asset_id = any($1::uuid[]))
order by next_try, id
limit $2
for update skip locked
"""

FILES_REMOVED: Final = "delete from purge_files where id = any($1::bigint[])"

FILE_FAILED: Final = """
update purge_files
set attempts = attempts + 1, last_error = $2,
    next_try = now() + make_interval(secs => least($3 * power(2, attempts), $4))
where id = $1
"""

PENDING_FILES_OF_OPERATION: Final = """
select count(*) from purge_files f
join batch_operation_items it on it.asset_id = f.asset_id
where it.operation_id = $1
"""

KIND_OF: Final = "select kind from batch_operations where id = $1"

EXPIRED_TRASH: Final = """
select user_id, array_agg(id) as ids from (
    (select user_id, id from trashed_images where deleted_at < now() - make_interval(secs => $1)
     order by deleted_at limit $2)
    union all
    (select user_id, id from trashed_videos where deleted_at < now() - make_interval(secs => $1)
     order by deleted_at limit $2)
) expired
where not exists (
    select 1 from batch_operations o where o.user_id = expired.user_id and o.status <> 'done')
group by user_id
"""

# The retention purge skips a user whose turn is taken: a restore may be moving those rows.
TRY_USER_STACK: Final = (
    "select pg_try_advisory_xact_lock(hashtextextended('batch:' || $1::uuid, 0))"
)

TRASH_PAGE: Final = """
select type, id, prompt, status, quality, model_type, duration_s, metadata, created_at,
       deleted_at, operation_id
from trashed_assets
where user_id = $1
  and ($2::timestamptz is null or (deleted_at, id) < ($2::timestamptz, $3::uuid))
order by deleted_at desc, id desc
limit $4
"""
