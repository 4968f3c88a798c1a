-- Batch operations that heal: one unfinished operation per user, a lease held by the worker that
-- runs it (renewed with every chunk and every retry, so a worker that stops making progress loses
-- it), and the state of a chunk that failed and waits for its retry.

alter table batch_operations drop constraint batch_operations_status_check;
alter table batch_operations add constraint batch_operations_status_check
    check (status in ('running', 'retrying', 'done'));

alter table batch_operations
    add column lease_owner      text,
    add column lease_expires_at timestamptz,
    add column attempts         integer not null default 0,
    add column last_error       text;

-- A user's stack has one top: a second unfinished operation would race the first.
create unique index uq_batch_operations_one_unfinished_per_user
    on batch_operations (user_id) where status <> 'done';

drop index idx_batch_operations_running;
create index idx_batch_operations_unfinished
    on batch_operations (lease_expires_at) where status <> 'done';
