"""Shared benchmark infrastructure: scale, one event loop, the prepared dataset, pools, servers.

Scale: ``SCALE`` (``tiny``, ``small``, ``plan``, ``100k``, ``1m``), default ``plan``. When timing is
off (``--benchmark-disable``, as ``make test`` runs every benchmark once) and ``SCALE`` is not set,
the scale is ``tiny``: a broken benchmark still fails the tests, quickly. ``make test`` also passes
``SCALE=tiny`` explicitly, since the Makefile exports its own default.

Async code is timed in one event loop that lives for the whole session (:class:`BenchLoop`); pools,
servers and data are built outside the timed part. The dataset of the chosen scale is prepared
once per session (``fixtures.prepare.prepare_dataset``) into a template database that nobody
connects to; readers share one copy of it (``bench_dataset``), writers take a private copy
(``bench_dataset_copy``).

Pairs: a before/after claim is two benchmarks whose ``extra_info`` carries the same ``claim``
(``url_generation.page_cold``) and ``side`` = ``before`` | ``after`` (:func:`record`);
``reports/figures.py`` derives ``saving.<claim>`` and ``speedup.<claim>`` from their medians.
Other figures: ``extra_info["figures"]`` (a mapping of figure keys to numbers) is merged as is, and
``extra_info["rate_figure"]`` with ``extra_info["units"]`` gives ``units / median``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from benchmarks.harness import (
    FIGURES_DIR,
    BenchDataset,
    BenchLoop,
    bench_scale,
)
from fixtures.database import DatabaseInfo, create_database, drop_database
from fixtures.generate import heavy_user_id, user_ids
from fixtures.prepare import PreparedDataset, prepare_dataset
from fixtures.processes import PROGRESS
from fixtures.spec import DatasetSpec, spec_for
from reference.db.pool import connect
from reports.ab import SLOWDOWN_ENV
from reports.figures import figures_from_json, format_pairs, write_figures

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench_loop() -> Iterator[BenchLoop]:
    loop = BenchLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> str:
    return bench_scale(request.config)


@pytest.fixture(scope="session")
def bench_spec(scale: str) -> DatasetSpec:
    return spec_for(scale)


@pytest.fixture(scope="session")
def bench_template(
    database: DatabaseInfo,
    bench_loop: BenchLoop,
    bench_spec: DatasetSpec,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BenchDataset]:
    """The dataset of the chosen scale, fully migrated, with signatures and stored files; a
    template only (never connect to it). ``make bench`` hands over the database its dataset
    step prepared (:data:`DATASET_URL_ENV`), so a scale is built once per run: at 1,000,000
    assets a second build would take minutes."""
    reused = _prepared_elsewhere(bench_spec)
    if reused is not None:
        yield reused
        return
    storage_dir = tmp_path_factory.mktemp("bench_storage")
    dsn = bench_loop.run(create_database(database.dsn, prefix="wsb_bench_tpl"))
    try:
        prepared = bench_loop.run(
            prepare_dataset(dsn, bench_spec, progress=False, storage_dir=storage_dir)
        )
        bench_loop.run(_vacuum_analyze(dsn))
        yield BenchDataset(
            dsn,
            bench_spec,
            prepared,
            heavy_user_id(bench_spec),
            tuple(user_ids(bench_spec)),
            storage_dir,
        )
    finally:
        bench_loop.run(drop_database(database.dsn, dsn))


#: A database already prepared at this run's scale (by ``make bench``'s dataset step), with
#: its :meth:`PreparedDataset.as_dict` in :data:`DATASET_JSON_ENV` and its stored files in
#: ``STORAGE_DIR``. Nobody may be connected to it while the benchmarks copy it.
DATASET_URL_ENV: Final = "BENCH_DATASET_URL"
DATASET_JSON_ENV: Final = "BENCH_DATASET_JSON"


def _prepared_elsewhere(spec: DatasetSpec) -> BenchDataset | None:
    dsn = os.environ.get(DATASET_URL_ENV)
    if not dsn:
        return None
    found = json.loads(Path(os.environ[DATASET_JSON_ENV]).read_text(encoding="utf-8"))
    prepared = PreparedDataset.from_dict(spec, found)
    storage_dir = Path(os.environ["STORAGE_DIR"])
    return BenchDataset(
        dsn, spec, prepared, heavy_user_id(spec), tuple(user_ids(spec)), storage_dir, "run"
    )


async def _vacuum_analyze(dsn: str) -> None:
    """Statistics for the indexes made after the load (expression indexes have none until
    analysed) and a current visibility map: the steady state autovacuum would reach. Copies
    of the template inherit both."""
    async with connect(dsn) as conn:
        await conn.execute("vacuum analyze")


@contextlib.contextmanager
def _copy_of(
    database: DatabaseInfo, bench_loop: BenchLoop, template: BenchDataset
) -> Iterator[BenchDataset]:
    dsn = bench_loop.run(create_database(database.dsn, "wsb_bench", template.dsn))
    try:
        yield dataclasses.replace(template, dsn=dsn)
    finally:
        bench_loop.run(drop_database(database.dsn, dsn))


@pytest.fixture(scope="session")
def bench_dataset(
    database: DatabaseInfo, bench_loop: BenchLoop, bench_template: BenchDataset
) -> Iterator[BenchDataset]:
    """The shared, read-only copy of the dataset, for every benchmark that does not write."""
    with _copy_of(database, bench_loop, bench_template) as dataset:
        yield dataset


@pytest.fixture
def bench_dataset_copy(
    database: DatabaseInfo, bench_loop: BenchLoop, bench_template: BenchDataset
) -> Iterator[BenchDataset]:
    """A private copy of the dataset for a benchmark that writes."""
    with _copy_of(database, bench_loop, bench_template) as dataset:
        yield dataset


@pytest.fixture(autouse=True)
def _harness_heap_frozen() -> Iterator[None]:
    """The session's own objects (datasets, earlier benchmarks' leftovers) moved out of the
    garbage collector's reach for each benchmark, as a server does after start-up
    (``gc.freeze``): a collection then walks what the measured code allocated, not the
    harness's heap. Without it, a warm URL lookup of 0.19 ms measured 0.26-0.40 ms in half of
    the processes, whenever a full collection fell inside its rounds."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture(autouse=True)
def _injected_slowdown(request: pytest.FixtureRequest) -> None:
    """Test-only: with ``WSBENCH_INJECT_SLOWDOWN=0.2`` every timed duration is 20% longer, a
    known regression for ``make gate-selftest`` to catch (the clock runs fast, nothing sleeps)."""
    factor = float(os.environ.get(SLOWDOWN_ENV) or 0)
    if factor <= 0 or "benchmark" not in request.fixturenames:
        return
    fixture = request.getfixturevalue("benchmark")
    clock = fixture._timer
    fixture._timer = lambda: clock() * (1 + factor)


# --- progress: one line now and then, with an estimate of what is left -------------------------

PROGRESS_EVERY_S: Final = 10.0


@dataclasses.dataclass
class _Progress:
    total: int = 0
    done: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    shown: float = 0.0


_PROGRESS_KEY = pytest.StashKey[_Progress]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.getoption("benchmark_json", None) is not None:  # a timed run
        session.config.stash[_PROGRESS_KEY] = _Progress(total=len(session.items))


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    progress = _CONFIG[0].stash.get(_PROGRESS_KEY, None) if _CONFIG else None
    if progress is None or not progress.total:
        return
    progress.done += 1
    now = time.monotonic()
    if progress.done < progress.total and now - progress.shown < PROGRESS_EVERY_S:
        return
    progress.shown = now
    elapsed = now - progress.started
    left = elapsed / progress.done * (progress.total - progress.done)
    reporter = _CONFIG[0].pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"{PROGRESS} {progress.done}/{progress.total} benchmarks in {elapsed:.0f} s, "
            f"about {left:.0f} s left (by the mean so far)"
        )


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG[:] = [config]


# --- reporting --------------------------------------------------------------------------------


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]
) -> None:
    """With ``--benchmark-json=DIR/X.json``: derive the figures, write ``DIR/figures/bench.json``
    (beside the run's own JSON, so one run never overwrites another's figures)."""
    figures, meta = figures_from_json(output_json)
    output_json["figures"] = figures
    json_file = config.getoption("benchmark_json", None)
    where = Path(json_file.name).parent / "figures" if json_file is not None else FIGURES_DIR
    write_figures(where / "bench.json", figures, meta)
    config.stash[_PAIRS_KEY] = format_pairs(output_json)


_PAIRS_KEY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_PAIRS_KEY, None)
    if lines:
        terminalreporter.section("before/after pairs (medians, same run)")
        for line in lines:
            terminalreporter.write_line(line)
