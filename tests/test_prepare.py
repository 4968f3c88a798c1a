"""``ensure_dataset``: an empty database is loaded, one that holds assets only migrated."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fixtures.database import run_async
from fixtures.prepare import ensure_dataset
from fixtures.pytest_plugin import SeededDataset
from fixtures.spec import spec_for
from reference.db.pool import connect

COUNT_IMAGES = "select count(*) from images"


async def _images(dsn: str) -> int:
    async with connect(dsn) as conn:
        return int(await conn.fetchval(COUNT_IMAGES))


def test_an_empty_database_is_loaded_once(fresh_dsn: str, tmp_path: Path) -> None:
    spec = spec_for("tiny", heavy=50)
    assert run_async(ensure_dataset(fresh_dsn, spec, tmp_path)) is True
    loaded = run_async(_images(fresh_dsn))
    assert loaded > 0
    assert run_async(ensure_dataset(fresh_dsn, spec, tmp_path)) is False
    assert run_async(_images(fresh_dsn)) == loaded


def test_a_loaded_database_gets_its_stored_files(
    seeded_template: SeededDataset, seeded_dsn: str, tmp_path: Path
) -> None:
    before = run_async(_images(seeded_dsn))
    assert run_async(ensure_dataset(seeded_dsn, seeded_template.spec, tmp_path)) is False
    assert run_async(_images(seeded_dsn)) == before
    assert any(path.is_file() for path in tmp_path.rglob("*"))


SIGNED = """
select (select count(*) from assets) as assets,
       (select count(*) from asset_signatures) as signed,
       (select count(*) from assets a where not exists
          (select 1 from asset_signatures s where s.asset_id = a.id)) as unsigned
"""


def test_prepared_signatures_cover_every_asset_once(fresh_dsn: str, tmp_path: Path) -> None:
    """Signatures are stored while the later migrations build their indexes (after 0008,
    which empties their table): every asset ends with exactly one."""
    from fixtures.prepare import prepare_dataset

    prepared = run_async(
        prepare_dataset(fresh_dsn, spec_for("tiny", heavy=80), progress=False, storage_dir=tmp_path)
    )
    assert {"signatures", "signatures_wait", "storage_objects"} <= set(prepared.steps)

    async def counts() -> tuple[int, int, int]:
        async with connect(fresh_dsn) as conn:
            row = await conn.fetchrow(SIGNED)
        return row["assets"], row["signed"], row["unsigned"]

    assets, signed, unsigned = run_async(counts())
    assert assets == prepared.load.assets
    assert (signed, unsigned) == (assets, 0)


def test_signatures_are_stored_before_the_tables_are_rewritten(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signatures are stored under a SHARE lock on the asset tables, beside the index
    builds; a migration that rewrites those tables (``REWRITE_VERSION``) needs them alone, and
    starting it while the storing ran deadlocked at 1,000,000 assets. Here the storing is made
    to outlast every index build: the rewrite must still start after it."""
    from fixtures import prepare

    events: list[tuple[str, int | None]] = []
    store = prepare._store_signatures
    migrate = prepare.migrate

    async def slow_store(*args: Any, **kwargs: Any) -> Any:
        found = await store(*args, **kwargs)
        await asyncio.sleep(1.0)
        events.append(("signatures stored", None))
        return found

    async def logged_migrate(dsn: str, target: int | None = None) -> list[int]:
        applied: list[int] = await migrate(dsn, target=target)
        events.extend(("migrated", version) for version in applied)
        return applied

    monkeypatch.setattr(prepare, "_store_signatures", slow_store)
    monkeypatch.setattr(prepare, "migrate", logged_migrate)
    prepared = run_async(
        prepare.prepare_dataset(fresh_dsn, spec_for("tiny", heavy=40), progress=False)
    )
    order = [version for _, version in events]
    stored = events.index(("signatures stored", None))
    assert prepare.REWRITE_VERSION in order[stored:], events
    assert "migrate_rewrite" in prepared.steps
