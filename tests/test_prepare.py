"""``ensure_dataset``: an empty database is loaded, one that holds assets only migrated."""

from __future__ import annotations

from pathlib import Path

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
