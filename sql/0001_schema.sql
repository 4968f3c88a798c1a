-- The plan's starting point: tables and keys only, no performance indexes.
-- Mirrors the Supabase app: assets live in `images` and `videos`; `metadata` holds
-- job_id, workspace_dismissed, is_sdxl and enhanced, any of which may be absent.

create table projects (
    id          uuid primary key,
    user_id     uuid not null,
    title       text not null,
    created_at  timestamptz not null default now()
);

create table images (
    id              uuid primary key,
    user_id         uuid not null,
    project_id      uuid references projects (id) on delete set null,
    prompt          text not null,
    status          text not null,
    quality         text not null,
    model_type      text,
    storage_path    text not null,
    thumbnail_path  text not null,
    metadata        jsonb,
    created_at      timestamptz not null default now()
);

create table videos (
    id              uuid primary key,
    user_id         uuid not null,
    project_id      uuid references projects (id) on delete set null,
    prompt          text not null,
    status          text not null,
    quality         text not null,
    model_type      text,
    storage_path    text not null,
    thumbnail_path  text not null,
    duration_s      real,
    metadata        jsonb,
    created_at      timestamptz not null default now()
);

create table jobs (
    id          uuid primary key,
    user_id     uuid not null,
    project_id  uuid references projects (id) on delete set null,
    job_type    text not null,
    quality     text not null,
    model_type  text,
    status      text not null,
    metadata    jsonb not null default '{}',
    image_id    uuid references images (id) on delete set null,
    video_id    uuid references videos (id) on delete set null,
    created_at  timestamptz not null default now()
);
