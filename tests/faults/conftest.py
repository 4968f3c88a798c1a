"""The fault suite's own PostgreSQL cluster (local server binaries: it is stopped, frozen and
restarted, so it cannot be the session's shared server), and the table of what clients saw."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures.database import BENCH_SETTINGS, LocalCluster, find_bindir, run_async
from reference.db.migrate import migrate
from tests.faults._support import HEADER, Figures

FIGURES: list[Figures] = []


@pytest.fixture(scope="session")
def fault_cluster() -> Iterator[LocalCluster]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("the fault suite needs the PostgreSQL server binaries (PG_BINDIR, pg_config)")
    cluster = LocalCluster(bindir, settings={**BENCH_SETTINGS, "max_connections": "100"})
    try:
        cluster.start()
        run_async(migrate(cluster.dsn))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def record_figures() -> list[Figures]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("faults: what clients saw")
        terminalreporter.write_line(HEADER)
        for figures in FIGURES:
            terminalreporter.write_line(figures.row())
