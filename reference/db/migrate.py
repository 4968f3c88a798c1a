"""Forward-only migration runner for the numbered files in ``sql/``.

A file is applied in one transaction unless its first line is ``-- migrate: no-transaction``
(needed for ``CREATE INDEX CONCURRENTLY``); such a file runs statement by statement and every
index it names is checked with ``pg_index.indisvalid`` afterwards, an invalid one (left by a
failed or cancelled earlier run) being dropped and built again. A session advisory lock makes
concurrent runners take turns, so running twice, or from two processes at once, is safe.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

from reference.db.pool import connect

log = logging.getLogger(__name__)

SQL_DIR: Final = Path(__file__).resolve().parents[2] / "sql"
NO_TRANSACTION_MARKER: Final = "-- migrate: no-transaction"
LOCK_KEY: Final = 0x5753_4245_4E43  # "WSBENC"
LOCK_POLL_SECONDS: Final = 0.05
_SUPERSEDES = re.compile(r"^-- migrate: supersedes ((?:[0-9a-f]{16}[ \t]*)+)$", re.M)
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_INDEX_NAME = re.compile(
    r"create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?(\w+)", re.I
)

CREATE_LEDGER: Final = """
create table if not exists schema_migrations (
    version     integer primary key,
    name        text not null,
    checksum    text not null,
    applied_at  timestamptz not null default now()
)
"""
APPLIED_VERSIONS: Final = "select version, checksum from schema_migrations order by version"
RECORD_VERSION: Final = (
    "insert into schema_migrations (version, name, checksum) values ($1, $2, $3)"
)
INVALID_INDEXES: Final = """
select c.relname
from pg_index i join pg_class c on c.oid = i.indexrelid
where not i.indisvalid and c.relname = any($1::text[])
"""


class MigrationError(RuntimeError):
    """A migration file is malformed, was edited after it was applied, or failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def superseded(self) -> frozenset[str]:
        """Checksums of earlier texts of this file that a database may have applied: an edit
        that later migrations make equivalent (``-- migrate: supersedes CHECKSUM ...``), such
        as no longer building an index a later migration drops."""
        return frozenset(
            checksum for match in _SUPERSEDES.finditer(self.text) for checksum in match[1].split()
        )

    def accepts(self, checksum: str) -> bool:
        return checksum == self.checksum or checksum in self.superseded

    @property
    def transactional(self) -> bool:
        return not self.text.startswith(NO_TRANSACTION_MARKER)

    def statements(self) -> list[str]:
        """Split on ``;`` at line ends: our files hold no functions or quoted semicolons."""
        body = "\n".join(
            line for line in self.text.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]

    def concurrent_indexes(self) -> list[str]:
        return _INDEX_NAME.findall(self.text)


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {sql_dir}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    await conn.execute(CREATE_LEDGER)
    return {r["version"]: r["checksum"] for r in await conn.fetch(APPLIED_VERSIONS)}


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    if migration.transactional:
        async with conn.transaction():
            await conn.execute(migration.text)
            await conn.execute(
                RECORD_VERSION, migration.version, migration.name, migration.checksum
            )
        return
    statements = migration.statements()
    for statement in statements:
        await conn.execute(statement)
    invalid = await conn.fetch(INVALID_INDEXES, migration.concurrent_indexes())
    for row in invalid:
        name = row["relname"]
        log.warning("index %s is invalid (an earlier build failed): rebuilding", name)
        await conn.execute(f'drop index concurrently if exists "{name}"')
        for statement in statements:
            if re.search(rf"\b{re.escape(name)}\b", statement):
                await conn.execute(statement)
    still_invalid = await conn.fetch(INVALID_INDEXES, migration.concurrent_indexes())
    if still_invalid:
        names = ", ".join(r["relname"] for r in still_invalid)
        raise MigrationError(f"{migration.path.name}: indexes still invalid: {names}")
    await conn.execute(RECORD_VERSION, migration.version, migration.name, migration.checksum)


async def _take_lock(conn: asyncpg.Connection) -> None:
    # Polled, not a blocking pg_advisory_lock: a session blocked inside a statement holds a
    # snapshot, and CREATE INDEX CONCURRENTLY in the lock holder would wait for it forever.
    while not await conn.fetchval("select pg_try_advisory_lock($1)", LOCK_KEY):  # noqa: ASYNC110
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def migrate_connection(
    conn: asyncpg.Connection, target: int | None = None, sql_dir: Path = SQL_DIR
) -> list[int]:
    """Apply pending migrations up to ``target`` (all when None); return the versions applied."""
    await _take_lock(conn)
    try:
        done = await applied_versions(conn)
        applied: list[int] = []
        for migration in discover(sql_dir):
            if target is not None and migration.version > target:
                break
            if migration.version in done:
                if not migration.accepts(done[migration.version]):
                    raise MigrationError(
                        f"{migration.path.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            log.info("applying migration %s", migration.path.name)
            await _apply(conn, migration)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("select pg_advisory_unlock($1)", LOCK_KEY)


async def migrate(dsn: str, target: int | None = None, sql_dir: Path = SQL_DIR) -> list[int]:
    async with connect(dsn) as conn:
        return await migrate_connection(conn, target, sql_dir)


async def current_version(dsn: str) -> int:
    async with connect(dsn) as conn:
        done = await applied_versions(conn)
        return max(done, default=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="apply the migrations in sql/")
    parser.add_argument("dsn")
    parser.add_argument("--to", type=int, default=None, help="stop at this version")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = asyncio.run(migrate(args.dsn, args.to))
    print(f"applied: {applied or 'nothing (up to date)'}")


if __name__ == "__main__":
    main()
