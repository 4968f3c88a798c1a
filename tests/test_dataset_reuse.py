"""A dataset prepared once per run: ``make bench``'s dataset step hands its database to the
benchmarks, which copy it instead of building the scale again."""

from __future__ import annotations

import pytest

from fixtures.database import admin_beside, create_database, drop_database, run_async
from fixtures.generate import heavy_user_id
from fixtures.load import LoadReport
from fixtures.prepare import PreparedDataset
from fixtures.spec import spec_for
from reference.db.pool import connect


def _prepared(scale: str = "tiny") -> PreparedDataset:
    spec = spec_for(scale)
    load = LoadReport(3, 40, 7, 11, 2, 1.25, heavy_user_id(spec))
    return PreparedDataset(spec, load, {"load": 1.25, "total": 9.5})


def test_a_prepared_dataset_reads_back_from_its_dict() -> None:
    prepared = _prepared()
    again = PreparedDataset.from_dict(prepared.spec, prepared.as_dict())
    assert again == prepared
    assert again.load.assets == 47


def test_a_prepared_dataset_of_another_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="'tiny'"):
        PreparedDataset.from_dict(spec_for("small"), _prepared("tiny").as_dict())


@pytest.mark.parametrize(
    ("admin", "template", "expected"),
    [
        ("postgresql://u@h:5/app", "postgresql://u@h:5/data", "postgresql://u@h:5/app"),
        ("postgresql://u@h:5/data", "postgresql://u@h:5/data", "postgresql://u@h:5/postgres"),
        (
            "postgresql://u@h:5/postgres",
            "postgresql://u@h:5/postgres",
            "postgresql://u@h:5/template1",
        ),
    ],
)
def test_the_copier_connects_beside_the_template(admin: str, template: str, expected: str) -> None:
    assert admin_beside(admin, template) == expected


async def _copy_through_itself(dsn: str) -> tuple[str, int]:
    async with connect(dsn) as conn:
        await conn.execute("create table marker (n int); insert into marker values (7)")
    copy = await create_database(dsn, prefix="wsb_test_copy", template_dsn=dsn)
    async with connect(copy) as conn:
        return copy, int(await conn.fetchval("select n from marker"))


def test_a_database_copies_with_only_its_own_url(fresh_dsn: str) -> None:
    """The benchmarks know the dataset's database by one URL, the server's admin URL too."""
    copy, marker = run_async(_copy_through_itself(fresh_dsn))
    try:
        assert marker == 7
    finally:
        run_async(drop_database(fresh_dsn, copy))
