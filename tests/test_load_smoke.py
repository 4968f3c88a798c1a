"""Real, short, headless Locust runs against the real service on the seeded tiny dataset.

Locust (and gevent) only ever run in a subprocess; the service runs in its own process too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.database import run_async
from fixtures.prepare import ensure_dataset
from fixtures.processes import ServiceProcess, free_port, start_child
from fixtures.pytest_plugin import SeededDataset
from loadtests._config import REPO, Identity, write_tokens
from reference.settings import child_secrets
from reference.web.auth import issue_token
from reports.latency import GroupStats
from reports.service_metrics import fetch_url_cache
from tests.conftest import SETTINGS

pytestmark = pytest.mark.slow

USERS = 5
STRICT = """
[load]
window_s = 5
[load.thresholds.workspace_page]
p50_ms = 0.001
error_rate = 0.01
"""
LENIENT = """
[load]
window_s = 5
[load.thresholds.overall]
p95_ms = 60000
error_rate = 0.5
[[target]]
id = "cache_hit_rate"
name = "cache hit rate"
source = "test"
metric = "load.url_cache_hit_rate"
unit = "ratio"
op = ">="
plan = 0.0
"""


@pytest.fixture
def served(
    seeded_template: SeededDataset, seeded_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The service on a private copy of the tiny dataset (the batch journey writes)."""
    storage = tmp_path_factory.mktemp("storage")
    run_async(ensure_dataset(seeded_dsn, seeded_template.spec, storage))
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"
    secrets = child_secrets({})
    secret, heavy = secrets["JWT_SECRET"], seeded_template.heavy_user
    users = seeded_template.users[:8]
    weights = [5.0 if u == heavy else 1.0 for u in users]
    write_tokens(
        tokens,
        [Identity(str(u), issue_token(secret, u), w) for u, w in zip(users, weights, strict=True)],
    )
    log_path = tmp_path_factory.mktemp("logs") / "service.log"
    env = {**os.environ, **secrets}
    with ServiceProcess(seeded_dsn, "unified", storage, log_path, env=env, workers=1) as service:
        yield service.url, tokens


def operations(base_url: str) -> set[str]:
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=5) as resp:  # noqa: S310
        return set(json.loads(resp.read())["paths"])


LOCUST = [
    sys.executable, "-m", "locust", "--config", str(REPO / "loadtests" / "locust.conf"),
    "-f", str(REPO / "loadtests"),
]  # fmt: skip


def locust_env(tokens: Path, targets: Path, out: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")},
        "LOAD_TOKENS": str(tokens),
        "TARGETS_FILE": str(targets),
        "LOAD_OUT": str(out),
        "URL_MODE": "unified",
    }


def run_locust(
    base_url: str, tokens: Path, targets: Path, out: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        *LOCUST, "--host", base_url, "--headless",
        "-u", str(USERS), "-r", str(USERS), "-t", "8s",
    ]  # fmt: skip
    return subprocess.run(
        command,
        env=locust_env(tokens, targets, out),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_threshold_breach_fails_the_run_and_lenient_targets_pass(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, tokens = served
    if "/v1/workspace" not in operations(base_url):
        pytest.skip("the service does not serve /v1/workspace yet")
    strict, lenient = tmp_path / "strict.toml", tmp_path / "lenient.toml"
    strict.write_text(STRICT)
    lenient.write_text(LENIENT)

    broken = run_locust(base_url, tokens, strict, tmp_path / "strict")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "workspace_page: p50_ms < 0.001" in broken.stdout
    assert "BREACH" in broken.stdout

    before = fetch_url_cache(base_url)
    passed = run_locust(base_url, tokens, lenient, tmp_path / "lenient")
    after = fetch_url_cache(base_url)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS: every threshold met" in passed.stdout

    figures = json.loads((tmp_path / "lenient" / "figures" / "load.json").read_text())["figures"]
    assert figures["load.workspace_page.count"] > 0
    assert figures["load.overall.p95_ms"] > 0
    assert "load.journey.open_workspace.p95_ms" in figures
    assert figures["load.url_cache_l1_hit_rate"] >= 0
    # The cache-hit figure is the service's own /metrics over the run, read when Locust stops:
    # the counters it printed are the service's, and requests still in flight at the stop (at
    # most one per user, each signing at most a largest page) are all that this test's read
    # after Locust has exited can add.
    delta = after - before
    assert delta.lookups > 0
    counted = re.search(r"url cache: (\d+) hits, (\d+) misses", passed.stdout + passed.stderr)
    assert counted is not None, passed.stdout + passed.stderr
    hits, misses = int(counted.group(1)), int(counted.group(2))
    assert figures["load.url_cache_hit_rate"] == pytest.approx(hits / (hits + misses))
    assert 0 < hits <= delta.hits
    assert misses <= delta.misses
    assert delta.lookups - (hits + misses) <= USERS * SETTINGS.page_size_max
    series = json.loads((tmp_path / "lenient" / "load_series.json").read_text())
    assert {row["group"] for row in series["series"]} >= {"workspace_page", "overall"}


def test_master_and_workers_in_separate_processes_merge_exactly(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """Locust's distributed mode as across machines: a master and two ``--worker`` processes.
    The master's exact histograms are the sum of what each worker says it sent."""
    base_url, tokens = served
    targets, out = tmp_path / "lenient.toml", tmp_path / "distributed"
    targets.write_text(LENIENT)
    env = locust_env(tokens, targets, out)
    port = str(free_port())
    master_command = [
        *LOCUST, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
        "--expect-workers", "2", "--host", base_url, "--headless",
        "-u", "4", "-r", "4", "-t", "6s", "--csv", str(out / "load"),
    ]  # fmt: skip
    master = start_child(master_command, log_path=out / "master.log", env=env, cwd=REPO)
    worker_command = [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
    workers = [
        start_child(worker_command, log_path=out / f"worker{i}.log", env=env, cwd=REPO)
        for i in range(2)
    ]
    try:
        code = master.wait(120)
        for worker in workers:
            worker.wait(30)
    finally:
        for child in (master, *workers):
            child.stop()
    assert code == 0, master.last_lines(60)

    merged = json.loads((out / "load_series.json").read_text())["whole_run"]
    parts = [json.loads(p.read_text())["groups"] for p in (out / "workers").glob("load_*.json")]
    assert len(parts) == 2
    assert all(part["overall"][0][1] > 0 for part in parts)  # both workers made requests
    assert set(merged) == set().union(*parts)
    for group, wire in merged.items():
        total = GroupStats()
        for part in parts:
            if group in part:
                total.merge(GroupStats.from_wire(part[group]))
        assert GroupStats.from_wire(wire) == total, group


def test_locust_writes_no_csv_unless_asked() -> None:
    """Locust 2.4x closes its CSV files while their writer greenlet may still run, a traceback
    at every stop of ``make bench``'s load tests, so its config asks for none (the README says
    so, and ``--csv PREFIX`` still asks); the figures come from the exact histograms."""
    config = (REPO / "loadtests" / "locust.conf").read_text()
    keys = {
        line.split("=", 1)[0].strip()
        for line in config.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert "users" in keys
    assert not {"csv", "csv-full-history"} & keys
