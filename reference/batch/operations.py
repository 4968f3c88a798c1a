"""Batch operations: selection, the operation log, chunked execution, undo and redo, purge.

An operation records who did what to which assets. Its items move, chunk by chunk, towards the
operation's ``target`` ('applied' or 'undone'); a chunk changes the assets, marks its items and
advances the progress in one transaction, so an interruption (connection or process killed)
leaves every asset either fully done or untouched, and the operation stays unfinished
('running', or 'retrying' after a failed chunk) until a worker finishes it. Undo and redo are the
same machinery run the other way.

Order: a user's operations form one stack, and at most one of them is unfinished at a time.
Creating, undoing or redoing checks that under the stack lock (and a unique index backs it);
whoever runs an operation holds the user's turn (:func:`users_turn`) for the operation's life,
so a request that comes while a short operation runs waits for it, in arrival order.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson

from reference.batch import sql as q
from reference.db.pool import holds_session_state
from reference.urls.buckets import UnsafePath, determine_bucket
from reference.urls.object_store import ObjectStore, check_name
from reference.web.errors import Conflict, NotFound, PayloadTooLarge

log = logging.getLogger(__name__)

#: Chunks that hit a deadlock with a concurrent operation on the same assets are retried.
CHUNK_RETRIES: Final = 3
#: The lease of a run that names none (tests, ``python -m reference.batch``).
DEFAULT_LEASE_S: Final = 30.0


class Kind(StrEnum):
    DISMISS = "dismiss"
    UNDISMISS = "undismiss"
    DELETE = "delete"
    RESTORE = "restore"
    PURGE = "purge"

    @property
    def acts_on_trash(self) -> bool:
        return self in (Kind.RESTORE, Kind.PURGE)

    @property
    def undoable(self) -> bool:
        return self is not Kind.PURGE


@dataclass(frozen=True)
class Selection:
    asset_ids: tuple[UUID, ...] = ()
    job_ids: tuple[str, ...] = ()

    def request_hash(self, kind: Kind) -> str:
        canonical = orjson.dumps(
            [kind.value, sorted(str(i) for i in self.asset_ids), sorted(self.job_ids)]
        )
        return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class Operation:
    id: UUID
    user_id: UUID
    kind: Kind
    status: str
    target: str
    total: int
    done: int
    not_found: tuple[UUID, ...]
    not_found_jobs: tuple[str, ...]
    created_at: datetime
    finished_at: datetime | None
    attempts: int = 0
    last_error: str | None = None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Operation:
        return cls(
            r["id"],
            r["user_id"],
            Kind(r["kind"]),
            r["status"],
            r["target"],
            r["total"],
            r["done"],
            tuple(r["not_found"]),
            tuple(r["not_found_jobs"]),
            r["created_at"],
            r["finished_at"],
            r["attempts"],
            r["last_error"],
        )

    @property
    def running(self) -> bool:
        return self.status != "done"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "kind": self.kind.value,
            "status": self.status,
            "state": self.target,
            "undoable": self.kind.undoable,
            "total": self.total,
            "done": self.done,
            "not_found": [str(i) for i in self.not_found],
            "not_found_jobs": list(self.not_found_jobs),
            "created_at": self.created_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class PurgePolicy:
    store: ObjectStore
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0


@dataclass(frozen=True)
class Lease:
    """Who runs an operation, for how long without a sign of progress."""

    owner: str
    seconds: float

    @classmethod
    def for_this_process(cls, seconds: float) -> Lease:
        return cls(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}", seconds)


#: Called after each committed chunk with the operation id and the chunk number (from 1).
ChunkObserver = Callable[[UUID, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def users_turn(conn: asyncpg.Connection, user_id: UUID) -> AsyncIterator[None]:
    """Hold the user's turn on ``conn`` (waits at most the connection's ``lock_timeout``;
    raises ``asyncpg.LockNotAvailableError`` when that runs out)."""
    holds_session_state(conn)
    await conn.execute(q.TAKE_USERS_TURN, user_id)
    yield
    # Not on an exception: the connection may be waiting out a cancelled statement, and its
    # release to the pool unlocks (pg_advisory_unlock_all) or drops it, within a bound.
    await conn.execute(q.END_USERS_TURN, user_id)


async def unfinished_operation(conn: asyncpg.Connection, user_id: UUID) -> Operation | None:
    record = await conn.fetchrow(q.UNFINISHED_OF_USER, user_id)
    return None if record is None else Operation.from_record(record)


def still_running(op: Operation) -> Conflict:
    return Conflict(
        f"operation {op.id} ({op.kind.value}, {op.status}, {op.done} of {op.total}) is still "
        "running; retry when it has finished",
        operation_id=str(op.id),
    )


async def _refuse_if_unfinished(conn: asyncpg.Connection, user_id: UUID) -> None:
    op = await unfinished_operation(conn, user_id)
    if op is not None:
        raise still_running(op)


async def create_operation(
    conn: asyncpg.Connection,
    user_id: UUID,
    kind: Kind,
    selection: Selection,
    *,
    max_ids: int,
    idempotency_key: str | None = None,
    lease: Lease | None = None,
) -> tuple[Operation, bool]:
    """Record an operation on the caller's selected assets; ``(operation, created)``.

    With an idempotency key already used by this user, the original operation comes back
    (``created`` false) and nothing is done again; the same key on another request is a 409,
    and so is any new operation while another of the user's is unfinished.
    """
    request_hash = selection.request_hash(kind)
    async with conn.transaction():
        await conn.execute(q.LOCK_USER_STACK, user_id)
        if idempotency_key is not None:
            existing = await conn.fetchrow(q.FIND_BY_KEY, user_id, idempotency_key)
            if existing is not None:
                if existing["request_hash"] != request_hash:
                    raise Conflict(
                        "this Idempotency-Key was used for a different request",
                        field="Idempotency-Key",
                    )
                return Operation.from_record(existing), False
        await _refuse_if_unfinished(conn, user_id)
        rows = await conn.fetch(
            q.SELECT_TRASHED if kind.acts_on_trash else q.SELECT_LIVE,
            user_id,
            list(selection.asset_ids),
            list(selection.job_ids),
        )
        if len(rows) > max_ids:
            raise PayloadTooLarge(
                f"the selection names {len(rows)} assets; at most {max_ids} per request",
                field="job_ids" if selection.job_ids else "asset_ids",
            )
        found = {r["id"] for r in rows}
        matched_jobs = {r["job_id"] for r in rows}
        not_found = [i for i in dict.fromkeys(selection.asset_ids) if i not in found]
        not_found_jobs = [j for j in dict.fromkeys(selection.job_ids) if j not in matched_jobs]
        await conn.execute(q.DISCARD_REDO, user_id)
        record = await conn.fetchrow(
            q.INSERT_OPERATION,
            uuid.uuid4(),
            user_id,
            kind.value,
            len(rows),
            not_found,
            not_found_jobs,
            idempotency_key,
            request_hash,
            None if lease is None else lease.owner,
            None if lease is None else lease.seconds,
        )
        assert record is not None  # the user's stack lock makes the key's conflict impossible
        await conn.execute(
            q.INSERT_ITEMS, record["id"], [r["id"] for r in rows], [r["type"] for r in rows]
        )
    return Operation.from_record(record), True


async def get_operation(conn: asyncpg.Connection, user_id: UUID, op_id: UUID) -> Operation:
    record = await conn.fetchrow(q.GET_OPERATION, op_id, user_id)
    if record is None:
        raise NotFound("no such operation", field="operation_id")
    return Operation.from_record(record)


async def pending_files(conn: asyncpg.Connection, op: Operation) -> int:
    count: int = await conn.fetchval(q.PENDING_FILES_OF_OPERATION, op.id)
    return count


async def start_undo(
    conn: asyncpg.Connection, user_id: UUID, lease: Lease | None = None
) -> Operation:
    """Turn the user's latest applied operation towards 'undone' (run it with run_operation)."""
    async with conn.transaction():
        await conn.execute(q.LOCK_USER_STACK, user_id)
        await _refuse_if_unfinished(conn, user_id)
        top = await conn.fetchrow(q.TOP_OF_UNDO, user_id)
        if top is None:
            raise Conflict("nothing to undo")
        op = Operation.from_record(top)
        if not op.kind.undoable:
            raise Conflict(
                "the last operation is a purge, which cannot be undone: its files are gone",
                operation_id=str(op.id),
            )
        return await _start_phase(conn, op.id, "undone", lease)


async def start_redo(
    conn: asyncpg.Connection, user_id: UUID, lease: Lease | None = None
) -> Operation:
    async with conn.transaction():
        await conn.execute(q.LOCK_USER_STACK, user_id)
        await _refuse_if_unfinished(conn, user_id)
        top = await conn.fetchrow(q.TOP_OF_REDO, user_id)
        if top is None:
            raise Conflict("nothing to redo")
        return await _start_phase(conn, top["id"], "applied", lease)


async def _start_phase(
    conn: asyncpg.Connection, op_id: UUID, target: str, lease: Lease | None
) -> Operation:
    started = await conn.fetchrow(
        q.START_PHASE,
        op_id,
        target,
        None if lease is None else lease.owner,
        None if lease is None else lease.seconds,
    )
    assert started is not None
    return Operation.from_record(started)


async def _act(
    conn: asyncpg.Connection,
    op: asyncpg.Record,
    forward: bool,
    images: list[UUID],
    videos: list[UUID],
) -> None:
    kind = Kind(op["kind"])
    op_id, user_id = op["id"], op["user_id"]
    if kind in (Kind.DISMISS, Kind.UNDISMISS):
        if forward:
            value = kind is Kind.DISMISS
            await conn.execute(q.SET_DISMISSED_IMAGES, op_id, user_id, images, value)
            await conn.execute(q.SET_DISMISSED_VIDEOS, op_id, user_id, videos, value)
        else:
            await conn.execute(q.UNSET_DISMISSED_IMAGES, op_id, user_id, images)
            await conn.execute(q.UNSET_DISMISSED_VIDEOS, op_id, user_id, videos)
    elif kind is Kind.PURGE:
        if not forward:
            raise Conflict("a purge cannot be undone")
        await purge_rows(conn, user_id, images + videos)
    elif (kind is Kind.DELETE) == forward:
        await conn.execute(q.TRASH_IMAGES, op_id, user_id, images)
        await conn.execute(q.TRASH_VIDEOS, op_id, user_id, videos)
    else:
        await conn.execute(q.UNTRASH_IMAGES, user_id, images)
        await conn.execute(q.UNTRASH_VIDEOS, user_id, videos)


async def run_chunk(
    conn: asyncpg.Connection, op_id: UUID, chunk_size: int, lease_s: float = DEFAULT_LEASE_S
) -> list[UUID] | None:
    """Move one chunk of items to the operation's target; the chunk's asset ids, or None
    when the operation is (now) done."""
    async with conn.transaction():
        op = await conn.fetchrow(q.LOCK_OPERATION, op_id)
        if op is None or op["status"] == "done":
            return None
        forward = op["target"] == "applied"
        rows = await conn.fetch(q.NEXT_CHUNK, op_id, not forward, chunk_size)
        if not rows:
            await conn.execute(q.FINISH, op_id)
            return None
        images = [r["asset_id"] for r in rows if r["type"] == "image"]
        videos = [r["asset_id"] for r in rows if r["type"] == "video"]
        await _act(conn, op, forward, images, videos)
        ids = images + videos
        await conn.execute(q.MARK_ITEMS, op_id, ids, forward)
        await conn.execute(q.ADVANCE, op_id, len(ids), lease_s)
    return ids


async def run_to_target(
    conn: asyncpg.Connection,
    op_id: UUID,
    chunk_size: int,
    purge: PurgePolicy,
    lease_s: float = DEFAULT_LEASE_S,
    after_chunk: ChunkObserver | None = None,
) -> None:
    """Run chunks until the operation is done; the caller holds the user's turn on ``conn``."""
    is_purge = await conn.fetchval(q.KIND_OF, op_id) == Kind.PURGE.value
    number = 0
    while True:
        ids = await _chunk_with_retries(conn, op_id, chunk_size, lease_s)
        if ids is None:
            return
        number += 1
        if is_purge:
            await remove_due_files(conn, purge, asset_ids=ids)
        if after_chunk is not None:
            await after_chunk(op_id, number)


async def run_operation(
    pool: asyncpg.Pool,
    op_id: UUID,
    chunk_size: int,
    purge: PurgePolicy,
    after_chunk: ChunkObserver | None = None,
    *,
    lease: Lease | None = None,
    force: bool = True,
) -> bool:
    """Take the user's turn and the operation's lease, and run it to its target, one
    transaction per chunk (resumable at any point). False when another live worker holds the
    lease (``force`` takes it over all the same) or the operation is already done."""
    lease = lease or Lease.for_this_process(DEFAULT_LEASE_S)
    async with pool.acquire() as conn:
        user_id = await conn.fetchval(q.USER_OF, op_id)
        if user_id is None:
            return False
        async with users_turn(conn, user_id):
            claimed = await conn.fetchval(q.CLAIM, op_id, lease.owner, lease.seconds, force)
            if claimed is None:
                return False
            await run_to_target(conn, op_id, chunk_size, purge, lease.seconds, after_chunk)
    return True


async def _chunk_with_retries(
    conn: asyncpg.Connection, op_id: UUID, chunk_size: int, lease_s: float
) -> list[UUID] | None:
    for attempt in range(CHUNK_RETRIES):
        try:
            return await run_chunk(conn, op_id, chunk_size, lease_s)
        except asyncpg.DeadlockDetectedError:
            if attempt == CHUNK_RETRIES - 1:
                raise
            log.warning("batch operation %s: deadlock, retrying the chunk", op_id)
    return None


async def running_operations(conn: asyncpg.Connection) -> list[UUID]:
    """Every unfinished operation, oldest first."""
    return [r["id"] for r in await conn.fetch(q.RUNNING_OPERATIONS)]


async def orphaned_operations(conn: asyncpg.Connection) -> list[UUID]:
    """Unfinished operations whose worker's lease has lapsed (or that never had one)."""
    return [r["id"] for r in await conn.fetch(q.ORPHANED_OPERATIONS)]


async def mark_retrying(conn: asyncpg.Connection, op_id: UUID, lease: Lease, error: str) -> None:
    await conn.execute(q.MARK_RETRYING, op_id, lease.owner, error, lease.seconds)


async def resume_all(
    pool: asyncpg.Pool, chunk_size: int, purge: PurgePolicy, after_chunk: ChunkObserver | None
) -> int:
    """Finish every unfinished operation (left by a killed process or connection)."""
    async with pool.acquire() as conn:
        ids = await running_operations(conn)
    for op_id in ids:
        await run_operation(pool, op_id, chunk_size, purge, after_chunk)
    return len(ids)


# --- purge: rows first (their files join the queue in the same transaction), then files -------


async def purge_rows(conn: asyncpg.Connection, user_id: UUID, ids: Sequence[UUID]) -> int:
    """Delete trashed rows and queue their files; call inside a transaction."""
    gone = await conn.fetch(q.PURGE_ROWS, user_id, list(ids))
    if not gone:
        return 0
    files: dict[tuple[str, str], UUID] = {}
    for row in gone:
        bucket = determine_bucket(row["type"], row["quality"], row["model_type"], row["metadata"])
        for path in (row["storage_path"], row["thumbnail_path"]):
            files.setdefault((bucket, path), row["id"])
    referenced = {
        r["p"] for r in await conn.fetch(q.STILL_REFERENCED, user_id, [p for _, p in files])
    }
    queued = [(b, p, a) for (b, p), a in files.items() if p not in referenced]
    await conn.execute(
        q.ENQUEUE_FILES,
        [a for _, _, a in queued],
        user_id,
        [b for b, _, _ in queued],
        [p for _, p, _ in queued],
    )
    return len(gone)


def _accepted(
    files: list[asyncpg.Record],
) -> tuple[list[asyncpg.Record], list[tuple[int, str]]]:
    """The queued objects the store accepts to remove, and the refused ones with the reason."""
    accepted: list[asyncpg.Record] = []
    refused: list[tuple[int, str]] = []
    for row in files:
        try:
            check_name(row["bucket"], row["path"])
        except UnsafePath as exc:
            refused.append((row["id"], f"{type(exc).__name__}: {exc}"))
        else:
            accepted.append(row)
    return accepted, refused


async def remove_due_files(
    conn: asyncpg.Connection,
    purge: PurgePolicy,
    *,
    asset_ids: Sequence[UUID] | None = None,
    limit: int = 1000,
) -> tuple[int, int]:
    """Remove queued objects that are due; ``(removed, failed)``. The objects' rows go in the
    transaction that takes them off the queue (an object already gone counts as removed), so a
    database that goes away midway leaves both as they were, for the next pass. A name the store
    refuses waits for a retry, with backoff."""
    async with conn.transaction():
        due = await conn.fetch(q.DUE_FILES, None if asset_ids is None else list(asset_ids), limit)
        if not due:
            return 0, 0
        accepted, failed = _accepted(due)
        await purge.store.remove_many(conn, [(r["bucket"], r["path"]) for r in accepted])
        removed = [r["id"] for r in accepted]
        await conn.execute(q.FILES_REMOVED, removed)
        await conn.executemany(
            q.FILE_FAILED,
            [(i, error, purge.retry_base_s, purge.retry_max_s) for i, error in failed],
        )
    for file_id, error in failed:
        log.warning("purge: object %s not removed (%s); will retry", file_id, error)
    return len(removed), len(failed)


async def purge_expired(
    pool: asyncpg.Pool, retention_s: float, purge: PurgePolicy, limit: int = 1000
) -> int:
    """Purge trash older than the retention, then retry due file removals; assets purged."""
    purged = 0
    async with pool.acquire() as conn:
        async with conn.transaction():
            for group in await conn.fetch(q.EXPIRED_TRASH, float(retention_s), limit):
                if not await conn.fetchval(q.TRY_USER_STACK, group["user_id"]):
                    continue
                purged += await purge_rows(conn, group["user_id"], group["ids"])
        while True:
            removed, failed = await remove_due_files(conn, purge, limit=limit)
            if removed == 0 or removed + failed < limit:
                break
    return purged
