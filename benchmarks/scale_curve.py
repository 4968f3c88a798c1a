"""The scale curve: latency of each route for the heavy user at 10k, 100k (and 1M) assets.

``python -m benchmarks.scale_curve`` (``make bench-scale``) brings up each scale of ``SCALES``
(default ``plan,100k``; add ``1m``), serves it from one ``python -m reference`` process and sends
each route one request at a time from one client: p50 and p95 with their 95% intervals, written
to ``reports/out/figures/curve.json`` (a component file, ``{"figures", "meta"}``) as
``curve.<route>.<scale>.p50_ms`` / ``.p95_ms``, and ``curve.flatness_p95``: the largest ratio,
over the paged routes, of p95 at the largest scale to p95 at the smallest.

A scale is built once into a template database named by scale, generator version and schema
version (``wsb_curve_100k_g1_m9``) when ``DATABASE_URL`` names a persistent server, and copied
(a file copy) for each run; a throwaway cluster from the provider chain builds it every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from uuid import UUID

import aiohttp
from tqdm import tqdm

from benchmarks.route_plans import route_plans
from fixtures.database import (
    DatabaseInfo,
    ProviderName,
    create_database,
    drop_database,
    provide_database,
    run_async,
    with_database,
)
from fixtures.generate import GENERATOR_VERSION, heavy_user_id
from fixtures.prepare import prepare_dataset, settle
from fixtures.processes import ServiceProcess, say
from fixtures.spec import spec_for
from fixtures.storage_files import write_storage_objects_in_child
from reference.db.migrate import discover, migrate
from reference.db.pool import connect
from reference.organize.index import store_signatures
from reference.search.query import SortKey
from reference.settings import Settings
from reference.workspace.views import Cursor
from reports import uncertainty
from reports.curve import CURVE_PAGE, Curve
from reports.environment import git_commit, probe_machine
from reports.report import write_curve_page
from reports.uncertainty import Estimate
from tests.conftest import SETTINGS, auth_headers

DEFAULT_SCALES: Final = "plan,100k"
FIGURES: Final = Path("reports/out/figures/curve.json")
REQUEST_TIMEOUT_S: Final = 60.0
#: Routes whose answer is one page of a keyset walk: their p95 must not grow with the history.
PAGED: Final = frozenset(
    {"workspace_first", "workspace_deep", "search_text", "filters_only"}
    | {f"search_text_{f}" for f in ("image", "video", "high", "sdxl", "completed")}
    | {f"search_text_sort_{k.value}" for k in SortKey}
    | {"search_text_high_sort_prompt", "search_video_sort_model"}
)
TEXT: Final = "q=knight&limit=50"
DUPLICATES: Final = "/v1/organize/duplicates?limit=50"
#: Cold: the user's organize version is bumped (as any change to their assets does) and the
#: route polled until the rebuilt index answers; one sample is one whole index build.
COLD_ROUTES: Final = frozenset({"duplicates_cold"})
BUMP_VERSION: Final = """
insert into organize_versions as v (user_id, version) values ($1, 1)
on conflict (user_id) do update set version = v.version + 1
"""
COLD_POLL_S: Final = 0.05
#: While the cold routes rebuild, another client's light request (``/healthz``) every this
#: many seconds: what a build costs the rest of its process's requests.
PROBE_EVERY_S: Final = 0.02
PROBE: Final = "healthz_during_build"
PROBES: Final[dict[str, str]] = {
    PROBE: "GET /healthz every 20 ms while duplicates_cold rebuilds the index",
}
COLD_BUDGET_S: Final = 180.0
COLD_MIN_ROUNDS: Final = 3
ROUTES: Final[dict[str, str]] = {
    "workspace_first": "/v1/workspace?limit=50",
    "search_text": f"/v1/search?{TEXT}",
    "search_text_image": f"/v1/search?{TEXT}&type=image",
    "search_text_video": f"/v1/search?{TEXT}&type=video",
    "search_text_high": f"/v1/search?{TEXT}&quality=high",
    "search_text_sdxl": f"/v1/search?{TEXT}&model=SDXL",
    "search_text_completed": f"/v1/search?{TEXT}&status=completed",
    **{f"search_text_sort_{k.value}": f"/v1/search?{TEXT}&sort={k.value}" for k in SortKey},
    "filters_only": "/v1/search?type=video&quality=high&sort=model&limit=50",
    # The two searches of the issue's own table, as it wrote them.
    "search_text_high_sort_prompt": f"/v1/search?{TEXT}&quality=high&sort=prompt",
    "search_video_sort_model": "/v1/search?type=video&sort=model&limit=50",
    "duplicates_cold": DUPLICATES,
    "duplicates_warm": DUPLICATES,
    "groups": "/v1/organize/groups?limit=50",
    "tags": "/v1/organize/tags",
}
#: Batch operations, timed from the POST to the operation's end (polled while it answers 202),
#: each undone, untimed, before the next round; the download is read to its last byte.
MUTATIONS: Final[dict[str, str]] = {
    "dismiss_1000": "POST /v1/batch/dismiss: the newest 1,000 assets by id",
    "dismiss_job": "POST /v1/batch/dismiss: every asset of the largest job, by job id",
    "download_100": "POST /v1/batch/download: the newest 100 assets (a ZIP of their files)",
}
NEWEST_ASSETS: Final = """
select id from assets where user_id = $1 order by created_at desc, id desc limit $2
"""
LARGEST_JOB: Final = """
select metadata->>'job_id' from assets where user_id = $1 and metadata->>'job_id' is not null
group by 1 order by count(*) desc, 1 limit 1
"""
OPERATION_POLL_S: Final = 0.01
MIDDLE_OF_HISTORY: Final = """
select created_at, id from assets where user_id = $1
order by created_at desc, id desc offset (select count(*) / 2 from assets where user_id = $1)
limit 1
"""
READY_MARK: Final = "wsb curve template: complete"
DATABASE_EXISTS: Final = "select exists (select 1 from pg_database where datname = $1)"
READY_TEMPLATES: Final = (
    "select datname from pg_database"
    " where datname like $1 and shobj_description(oid, 'pg_database') = $2"
)
DATABASE_COMMENT: Final = (
    "select shobj_description(oid, 'pg_database') from pg_database where datname = $1"
)


@dataclass(frozen=True)
class RouteLatency:
    route: str
    scale: str
    p50: Estimate | None
    p95: Estimate | None
    #: Answers other than 200, by status.
    failures: dict[int, int] = field(default_factory=dict)


def template_name(scale: str) -> str:
    schema = max(m.version for m in discover())
    return f"wsb_curve_{scale}_g{GENERATOR_VERSION}_m{schema}"


async def _template_ready(admin_dsn: str, name: str) -> bool:
    async with connect(admin_dsn) as conn:
        return bool(await conn.fetchval(DATABASE_COMMENT, name) == READY_MARK)


async def _build(admin_dsn: str, name: str, scale: str) -> None:
    """Build ``name`` from scratch; marked complete only at the end, so a build cut short is
    rebuilt, never reused."""
    async with connect(admin_dsn) as conn:
        await conn.execute(f'drop database if exists "{name}" with (force)')
        await conn.execute(f"create database \"{name}\" template template0 encoding 'UTF8'")
    dsn = with_database(admin_dsn, name)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as blobs:
        # The stored objects are rows; their shared blobs are regenerated where they are read.
        await prepare_dataset(dsn, spec_for(scale), storage_dir=Path(blobs))
    async with connect(admin_dsn) as conn:
        await conn.execute(f"comment on database \"{name}\" is '{READY_MARK}'")
    say(f"{name}: built in {time.perf_counter() - started:.0f} s")


async def _upgrade(admin_dsn: str, name: str, scale: str) -> bool:
    """Make ``name`` from the newest complete template of the same scale and generator at an
    earlier schema version, migrated forward (what a deployment does): a new migration costs
    its own work, not a rebuild of the data. False when there is none."""
    prefix = name[: name.rindex("_m") + 2]
    schema = int(name[len(prefix) :])
    async with connect(admin_dsn) as conn:
        rows = await conn.fetch(READY_TEMPLATES, prefix + "%", READY_MARK)
    older = [
        (int(version), r["datname"])
        for r in rows
        if (version := r["datname"][len(prefix) :]).isdigit() and int(version) < schema
    ]
    if not older:
        return False
    source = max(older)[1]
    started = time.perf_counter()
    async with connect(admin_dsn) as conn:
        await conn.execute(f'drop database if exists "{name}" with (force)')
        await conn.execute(f'create database "{name}" template "{source}"')
    dsn = with_database(admin_dsn, name)
    applied = await migrate(dsn)
    async with connect(dsn) as conn:
        await store_signatures(conn, progress=False)
    with tempfile.TemporaryDirectory() as blobs:
        await write_storage_objects_in_child(dsn, Path(blobs))  # the ones it lacks
    await settle(dsn)
    async with connect(admin_dsn) as conn:
        await conn.execute(f"comment on database \"{name}\" is '{READY_MARK}'")
    say(f"{name}: {source} migrated by {applied} in {time.perf_counter() - started:.0f} s")
    return True


@contextmanager
def scale_database(info: DatabaseInfo, scale: str) -> Iterator[str]:
    """A database holding ``scale``: a copy of its kept template (made from an earlier schema's
    template when there is one), or built for this run."""
    name = template_name(scale)
    keep = info.provider is ProviderName.ENV
    if not keep:
        run_async(_build(info.dsn, name, scale))
    elif run_async(_template_ready(info.dsn, name)):
        say(f"{name}: reusing the template")
    elif not run_async(_upgrade(info.dsn, name, scale)):
        run_async(_build(info.dsn, name, scale))
    template = with_database(info.dsn, name)
    dsn = run_async(create_database(info.dsn, prefix="wsb_curve_run", template_dsn=template))
    try:
        yield dsn
    finally:
        run_async(drop_database(info.dsn, dsn))
        if not keep:
            run_async(drop_database(info.dsn, template))


async def _deep_cursor(dsn: str, user: UUID) -> str:
    async with connect(dsn) as conn:
        row = await conn.fetchrow(MIDDLE_OF_HISTORY, user)
    if row is None:
        raise RuntimeError("the heavy user has no assets")
    return Cursor(row["created_at"], row["id"]).encode()


async def _sample(
    session: aiohttp.ClientSession, url: str, requests: int, warmup: int
) -> tuple[list[float], dict[int, int]]:
    """Timings of the 200 answers, and how many answers had each other status (a route that
    fails at one scale is reported as failing there, and the others are still measured)."""
    timings: list[float] = []
    failures: dict[int, int] = {}
    for index in range(warmup + requests):
        status, ms = await _timed_get(session, url)
        if status != 200:
            failures[status] = failures.get(status, 0) + 1
        elif index >= warmup:
            timings.append(ms)
    return timings, failures


async def _timed_get(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """One GET read to its end: its status and milliseconds."""
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
    return response.status, (time.perf_counter() - started) * 1000


async def _probe(
    session: aiohttp.ClientSession, until: asyncio.Event
) -> tuple[list[float], dict[int, int]]:
    """``/healthz`` every :data:`PROBE_EVERY_S` until ``until`` is set: its latencies (ms)."""
    timings: list[float] = []
    failures: dict[int, int] = {}
    while not until.is_set():
        status, ms = await _timed_get(session, "/healthz")
        if status == 200:
            timings.append(ms)
        else:
            failures[status] = failures.get(status, 0) + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), PROBE_EVERY_S)
    return timings, failures


async def _cold_sample(
    session: aiohttp.ClientSession, base_url: str, url: str, dsn: str, user: UUID, rounds: int
) -> tuple[tuple[list[float], dict[int, int]], tuple[list[float], dict[int, int]]]:
    """Seconds from the first request after a version bump to the rebuilt index's answer, in
    ms; 503 ``organize_index_building`` answers are the build going on, anything else fails.
    At least ``COLD_MIN_ROUNDS`` rounds, then as many of ``rounds`` as ``COLD_BUDGET_S`` allows.
    Second, the latencies of :func:`_probe`, from another client, during the rounds."""
    done = asyncio.Event()
    async with aiohttp.ClientSession(base_url, timeout=session.timeout) as other:
        probing = asyncio.ensure_future(_probe(other, done))
        try:
            rebuilt = await _cold_rounds(session, url, dsn, user, rounds)
        finally:
            done.set()
            probed = await probing
    return rebuilt, probed


async def _cold_rounds(
    session: aiohttp.ClientSession, url: str, dsn: str, user: UUID, rounds: int
) -> tuple[list[float], dict[int, int]]:
    timings: list[float] = []
    failures: dict[int, int] = {}
    spent = 0.0
    for index in range(rounds):
        if index >= COLD_MIN_ROUNDS and spent > COLD_BUDGET_S:
            break
        async with connect(dsn) as conn:
            await conn.execute(BUMP_VERSION, user)
        started = time.perf_counter()
        while True:
            async with session.get(url) as response:
                body = await response.read()
            if response.status == 200:
                timings.append((time.perf_counter() - started) * 1000)
                break
            if response.status != 503 or b"organize_index_building" not in body:
                failures[response.status] = failures.get(response.status, 0) + 1
                break
            await asyncio.sleep(COLD_POLL_S)
        spent += time.perf_counter() - started
    return timings, failures


async def _mutation_bodies(dsn: str, user: UUID) -> dict[str, dict[str, list[str]]]:
    async with connect(dsn) as conn:
        newest = [str(r["id"]) for r in await conn.fetch(NEWEST_ASSETS, user, 1_000)]
        job = await conn.fetchval(LARGEST_JOB, user)
    if len(newest) < 100 or job is None:
        raise RuntimeError("the heavy user has too few assets or no job for the batch routes")
    return {
        "dismiss_1000": {"asset_ids": newest},
        "dismiss_job": {"job_ids": [str(job)]},
        "download_100": {"asset_ids": newest[:100]},
    }


async def _operation(session: aiohttp.ClientSession, path: str, body: object) -> int:
    """POST an operation and wait for its end (at most ``REQUEST_TIMEOUT_S``): its final status
    code (200), or the error's."""
    async with session.post(path, json=body) as response:
        await response.read()
        status, location = response.status, response.headers.get("Location")
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        while status == 202 and location:
            await asyncio.sleep(OPERATION_POLL_S)
            async with session.get(location) as response:
                await response.read()
                status = response.status
    return status


async def _mutation_sample(
    session: aiohttp.ClientSession, route: str, body: object, rounds: int
) -> tuple[list[float], dict[int, int]]:
    timings: list[float] = []
    failures: dict[int, int] = {}
    for _ in range(rounds):
        started = time.perf_counter()
        if route.startswith("download"):
            async with session.post("/v1/batch/download", json=body) as response:
                await response.read()
                status = response.status
                missing = response.headers.get("X-Assets-Missing-Files", "0")
            if status == 200 and missing != "0":
                raise RuntimeError(f"{route}: {missing} files missing; the archive is not the one")
        else:
            status = await _operation(session, "/v1/batch/dismiss", body)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            failures[status] = failures.get(status, 0) + 1
            continue
        timings.append(elapsed)
        if not route.startswith("download"):
            undone = await _operation(session, "/v1/batch/undo", {})
            if undone != 200:
                raise RuntimeError(f"{route}: undo answered {undone}; the next round would differ")
    return timings, failures


async def measure_routes(
    base_url: str,
    routes: dict[str, str],
    headers: dict[str, str],
    requests: int,
    warmup: int,
    cold: tuple[str, UUID, int],
    mutations: int,
) -> dict[str, tuple[list[float], dict[int, int]]]:
    """Each route in turn; ``cold`` is (dsn, user, rounds) of the cold routes; then each batch
    route ``mutations`` times."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    samples: dict[str, tuple[list[float], dict[int, int]]] = {}
    async with aiohttp.ClientSession(base_url, headers=headers, timeout=timeout) as session:
        for route, path in tqdm(routes.items(), desc="routes", unit=" route"):
            if route in COLD_ROUTES:
                samples[route], samples[PROBE] = await _cold_sample(session, base_url, path, *cold)
            else:
                samples[route] = await _sample(session, path, requests, warmup)
        dsn, user, _ = cold
        bodies = await _mutation_bodies(dsn, user)
        for route in tqdm(MUTATIONS, desc="batch routes", unit=" route"):
            samples[route] = await _mutation_sample(session, route, bodies[route], mutations)
    return samples


@dataclass(frozen=True)
class Rounds:
    requests: int
    warmup: int
    cold: int
    mutations: int


def measure_scale(
    info: DatabaseInfo, scale: str, rounds: Rounds
) -> tuple[list[RouteLatency], dict[str, str]]:
    """Each route's latencies at ``scale``, and the plans of the routes that send SQL."""
    user = heavy_user_id(spec_for(scale))
    with scale_database(info, scale) as dsn, tempfile.TemporaryDirectory() as storage:
        routes = {
            **ROUTES,
            "workspace_deep": f"/v1/workspace?limit=50&cursor={run_async(_deep_cursor(dsn, user))}",
        }
        env = {**os.environ, "JWT_SECRET": SETTINGS.jwt_secret}
        log = Path(tempfile.gettempdir()) / f"scale-curve-{scale}.log"
        with ServiceProcess(dsn, "unified", Path(storage), log, env=env) as running:
            samples = asyncio.run(
                measure_routes(
                    running.url, routes, auth_headers(user), rounds.requests, rounds.warmup,
                    (dsn, user, rounds.cold), rounds.mutations,
                )
            )  # fmt: skip
            # After the timed requests, so their caches are the ones the plans see.
            plans = run_async(route_plans(dsn, routes, user, Settings.from_env(env)))
    results = []
    for route, (timings, failures) in samples.items():
        p50, p95 = uncertainty.quantile_ci(timings, 0.5), uncertainty.quantile_ci(timings, 0.95)
        results.append(RouteLatency(route, scale, p50, p95, failures))
    return results, plans


def flatness(results: Sequence[RouteLatency], scales: Sequence[str]) -> Estimate | None:
    """The worst paged route's p95(largest) / p95(smallest), with the interval of the worst
    route's ratio taken from the ends of its two intervals (conservative)."""
    if len(scales) < 2 or any(r.failures and r.route in PAGED for r in results):
        return None  # a paged route that failed somewhere: the curve is not flat, nor measured
    by_key = {(r.route, r.scale): r.p95 for r in results if not r.failures}
    worst: Estimate | None = None
    for route in sorted(PAGED):
        small, large = by_key.get((route, scales[0])), by_key.get((route, scales[-1]))
        if small is None or large is None:
            continue
        ratio = Estimate(
            large.value / small.value, large.low / small.high, large.high / small.low, large.n
        )
        if worst is None or ratio.value > worst.value:
            worst = ratio
    return worst


def figures_of(results: Sequence[RouteLatency], scales: Sequence[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for r in results:
        key = f"curve.{r.route}.{r.scale}"
        if r.failures:
            figures[f"{key}.failed"] = float(sum(r.failures.values()))
            continue
        uncertainty.put(figures, f"{key}.p50_ms", r.p50)
        uncertainty.put(figures, f"{key}.p95_ms", r.p95)
    uncertainty.put(figures, "curve.flatness_p95", flatness(results, scales))
    return figures


def _cell(r: RouteLatency | None) -> str:
    if r is None:
        return ""
    if r.failures or r.p50 is None or r.p95 is None:
        return "failed: " + ", ".join(f"HTTP {s} x{n}" for s, n in sorted(r.failures.items()))
    return f"{r.p50.value:.2f} / {r.p95.value:.2f} [{r.p95.low:.2f}, {r.p95.high:.2f}]"


def table(results: Sequence[RouteLatency], scales: Sequence[str]) -> str:
    cells = {(r.route, r.scale): r for r in results}
    lines = ["| route | " + " | ".join(f"{s} p50 / p95 ms [95% of p95]" for s in scales) + " |"]
    lines.append("|---" * (len(scales) + 1) + "|")
    for route in [*ROUTES, "workspace_deep", *MUTATIONS, *PROBES]:
        row = []
        for scale in scales:
            row.append(_cell(cells.get((route, scale))))
        lines.append(f"| {route} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default=os.environ.get("SCALES", DEFAULT_SCALES))
    parser.add_argument("--requests", type=int, default=200, help="timed requests per route")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per route")
    parser.add_argument(
        "--cold-rounds", type=int, default=5, help="index builds per cold route (at least 3)"
    )
    parser.add_argument(
        "--batch-rounds", type=int, default=10, help="rounds of each batch route (each undone)"
    )
    parser.add_argument("--json", type=Path, default=FIGURES)
    parser.add_argument("--html", type=Path, default=CURVE_PAGE, help="the curve's report page")
    args = parser.parse_args(argv)
    started, clock, load_at_start = datetime.now(UTC), time.perf_counter(), os.getloadavg()
    commit = git_commit()  # the code measured: taken before the run, which takes minutes
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    results: list[RouteLatency] = []
    plans: dict[str, dict[str, str]] = {}
    rounds = Rounds(
        args.requests, args.warmup, max(COLD_MIN_ROUNDS, args.cold_rounds), args.batch_rounds
    )
    with provide_database() as info:
        for scale in scales:
            say(f"scale {scale}: {spec_for(scale).heavy_assets:,} assets for the heavy user")
            measured, scale_plans = measure_scale(info, scale, rounds)
            results += measured
            for route, text in scale_plans.items():
                plans.setdefault(route, {})[scale] = text
    figures = figures_of(results, scales)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "scales": {s: spec_for(s).heavy_assets for s in scales},
        "requests": args.requests,
        "warmup": args.warmup,
        "cold_rounds": rounds.cold,
        "cold": sorted(COLD_ROUTES),
        # EXPLAIN (ANALYZE, BUFFERS) of each route's statements, as the service sends them.
        "plans": plans,
        "batch_rounds": rounds.mutations,
        "routes": {
            **ROUTES,
            "workspace_deep": "/v1/workspace?limit=50&cursor=<middle>",
            **MUTATIONS,
            **PROBES,
        },
        "paged": sorted(PAGED),
        "measured_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - clock, 1),
        "commit": commit,
        "machine": probe_machine().as_dict(),
        "load_average": {"start": list(load_at_start), "end": list(os.getloadavg())},
    }
    # The shape of every component file (reports.bench.read_component).
    document = {"figures": figures, "meta": meta}
    args.json.write_text(json.dumps(document, indent=2, sort_keys=True))
    print(table(results, scales))
    flat = uncertainty.get(figures, "curve.flatness_p95")
    if flat is not None:
        print(f"curve.flatness_p95 = {flat.value:.2f} [{flat.low:.2f}, {flat.high:.2f}]")
    print(f"figures: {args.json}")
    print(f"report: {write_curve_page(Curve(figures, meta), args.html)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
