"""The hot path near this machine's limit: requests/s of one service process at 8 connections.

``python -m benchmarks.hot_path DSN`` serves the database at DSN (already loaded, stored files
under ``STORAGE_DIR``) from one ``python -m reference`` process, warms its caches, then drives
each route with ``wrk`` (a fixed number of connections, each sending its next request as soon as
the previous one is answered) for ``--rounds`` rounds. Each round measures the route, then its
floor: the same page built as JSON by PostgreSQL (``json_agg``), fetched over asyncpg on as many
connections, with no HTTP and no Python per row; the two alternate, so that drift on the machine
hits both. Per route it reports the median of the rounds and its 95% interval
(:func:`reports.uncertainty.median_ci`) of requests/s, the floor's pages/s, their ratio, the
service's CPU per request and wrk's p50/p99 latency. ``--json`` writes every round and the
estimates as a component file of ``make bench`` (``{"figures": ..., "meta": ...}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg

from fixtures.generate import heavy_user_id
from fixtures.processes import PROGRESS, ServiceProcess
from fixtures.spec import spec_for
from fixtures.storage_files import storage_dir_from_env
from reference.db.pool import GENERIC_PLAN_SETTINGS, SERVER_SETTINGS
from reference.search.query import Page, parse_query
from reference.search.service import search_setup, search_statements, walk_needed
from reference.settings import Settings
from reference.workspace.sql import PAGE_ALL
from reports.uncertainty import Estimate, median_ci, put
from tests.conftest import SETTINGS, auth_headers

CONNECTIONS: Final = 8
ROUTES: Final = {
    "workspace": "/v1/workspace?limit=50",
    "search": "/v1/search?q=knight&limit=50",
}
_WRK_LINE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3}


#: What each round gives, in the order the summary prints it; ``ratio_to_floor`` is the
#: round's requests/s over its own floor.
STATS: Final = (
    "requests_per_s",
    "floor_per_s",
    "ratio_to_floor",
    "cpu_ms_per_request",
    "p50_ms",
    "p99_ms",
)
#: The run's figures are ``hot.<route>.<stat>``.
FIGURE_PREFIX: Final = "hot"


@dataclass(frozen=True)
class Round:
    route: str
    #: 1-based, in the order measured.
    round: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    floor_per_s: float
    #: The service process's CPU (user + system) per answered request: unlike requests/s, it
    #: hardly moves when other work shares the cores.
    cpu_ms_per_request: float

    @property
    def ratio_to_floor(self) -> float | None:
        return self.requests_per_s / self.floor_per_s if self.floor_per_s > 0 else None

    def stat(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio_to_floor": self.ratio_to_floor}


def estimates(rounds: Sequence[Round]) -> dict[str, dict[str, Estimate]]:
    """Per route (in the order first measured), the median of its rounds and its 95% interval
    for each of :data:`STATS`; a statistic no round has (wrk printed no p99) is left out."""
    by_route: dict[str, list[Round]] = {}
    for r in rounds:
        by_route.setdefault(r.route, []).append(r)
    found: dict[str, dict[str, Estimate]] = {}
    for route, measured in by_route.items():
        found[route] = {}
        for stat in STATS:
            estimate = median_ci([v for r in measured if (v := r.stat(stat)) is not None])
            if estimate is not None:
                found[route][stat] = estimate
    return found


def figures(found: Mapping[str, Mapping[str, Estimate]]) -> dict[str, float]:
    """The run's figures (``hot.<route>.<stat>``, each with its interval)."""
    flat: dict[str, float] = {}
    for route, stats in found.items():
        for stat, estimate in stats.items():
            put(flat, f"{FIGURE_PREFIX}.{route}.{stat}", estimate)
    return flat


def summary_line(route: str, stats: Mapping[str, Estimate]) -> str:
    """One route as ``median [low, high]`` per statistic, with the number of rounds."""

    def shown(stat: str, unit: str, digits: int) -> str:
        e = stats.get(stat)
        if e is None:
            return f"- {unit}"
        return f"{e.value:,.{digits}f} [{e.low:,.{digits}f}, {e.high:,.{digits}f}] {unit}"

    n = max((e.n for e in stats.values()), default=0)
    return (
        f"{route:10s} {shown('requests_per_s', 'req/s', 0)}"
        f"  floor {shown('floor_per_s', 'pages/s', 0)}"
        f"  ratio {shown('ratio_to_floor', '', 2).rstrip()}"
        f"  CPU {shown('cpu_ms_per_request', 'ms/request', 2)}"
        f"  p50 {shown('p50_ms', 'ms', 1)}  p99 {shown('p99_ms', 'ms', 1)}  ({n} rounds)"
    )


def component(
    rounds: Sequence[Round],
    scale: str,
    seconds: float,
    requested_rounds: int,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """``--json``'s content: the figures, and every round and estimate in ``meta``."""
    found = estimates(rounds)
    return {
        "figures": figures(found),
        "meta": {
            "scale": scale,
            "seconds": seconds,
            "rounds": requested_rounds,
            "connections": connections,
            "routes": dict(ROUTES),
            "measured": [r.as_dict() for r in rounds],
            "estimates": {
                route: {stat: asdict(e) for stat, e in stats.items()}
                for route, stats in found.items()
            },
        },
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, token: str, seconds: float, connections: int = CONNECTIONS) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
         "-H", f"Authorization: {token}", url],
        check=True, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rate = _WRK_LINE.search(out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    failed = _WRK_NON_2XX.search(out)
    if failed is not None:
        # An error page is cheap: counting it would measure the wrong route.
        raise RuntimeError(f"{failed[1]} answers of {url} were not 2xx:\n{out}")
    latency = {f"p{q}_ms": float(v) * _UNIT_MS[u] for q, v, u in _WRK_LATENCY.findall(out)}
    return {"requests_per_s": float(rate[1]), **latency}


#: A route's statements for its floor: (sql, args) of each, in order, and the pool's settings.
FloorStatements = tuple[list[tuple[str, list[Any]]], dict[str, str]]


async def floor(
    dsn: str,
    statements: list[tuple[str, list[Any]]],
    seconds: float,
    settings: dict[str, str],
    connections: int = CONNECTIONS,
) -> float:
    """Pages/s when PostgreSQL builds the whole JSON page: the cost of the route's queries
    alone (each of ``statements`` per page, one after the other), on ``connections``
    connections set up as the route's pool (``settings``)."""
    wrapped = [(f"select json_agg(t)::text from ({sql}) t", args) for sql, args in statements]
    pool = await asyncpg.create_pool(
        dsn, min_size=connections, max_size=connections, server_settings=settings
    )
    assert pool is not None
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                for sql, args in wrapped:
                    await conn.fetchval(sql, *args)
                done += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.perf_counter() - started)
    finally:
        await pool.close()


async def _floor_statements(dsn: str, user: Any) -> dict[str, FloorStatements]:
    """The very statements the service sends for each route: for search, its text page (which
    carries the capped total) and, when that did not read every match, the walk; or, for a
    search the trigram sample expects past the cap, the count and the walk (sent at once by the
    service)."""
    page = Page(parse_query({"q": "knight"}), 51)
    cap = Settings.from_env({}).search_count_cap
    conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
    try:
        caps, trigrams = await search_setup(conn)
        first, walk, *_ = search_statements(caps, user, page, cap, trigrams)
        walks = first.name == "count" or walk_needed(
            first, (await conn.fetch(first.sql, *first.args))[0]["total"]
        )
    finally:
        await conn.close()
    search = [(first.sql, first.args), (walk.sql, walk.args)]
    return {
        "workspace": ([(PAGE_ALL, [user, 51])], GENERIC_PLAN_SETTINGS),
        "search": (search if walks else search[:1], SERVER_SETTINGS),
    }


#: py-spy's output formats, by the file suffix written.
PROFILE_FORMATS: Final = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


def profiled(pid: int, seconds: float, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    """py-spy sampling the service for ``seconds`` into ``out`` (started beside wrk): a flame
    graph, or collapsed stacks (``raw``) to read as text."""
    # On PATH, or beside this interpreter (``.venv/bin/pip install py-spy`` without activating).
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", f"{seconds:.0f}", "--rate", "250",
         "--nonblocking", "--format", fmt, "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    dsn: str,
    scale: str,
    seconds: float,
    profile_dir: Path | None = None,
    profile_format: str = "flamegraph",
    rounds: int = 3,
    storage_dir: Path | None = None,
    connections: int = CONNECTIONS,
) -> list[Round]:
    """``rounds`` rounds of each route, each wrk for ``seconds`` then the floor as long; with
    ``profile_dir``, py-spy samples each route's first round. Stored files: ``storage_dir``
    (default ``STORAGE_DIR``)."""
    user = heavy_user_id(spec_for(scale))
    token = auth_headers(user)["Authorization"]
    # One process, verifying the tokens signed here with the tests' secrets.
    env = {**os.environ, **SETTINGS.secrets()}
    statements = asyncio.run(_floor_statements(dsn, user))
    results = []
    log = Path(tempfile.gettempdir()) / "hot-path-service.log"
    storage = storage_dir or storage_dir_from_env()
    service = ServiceProcess(dsn, "unified", storage, log, env=env, workers=1)
    with service as running:
        base_url = running.url
        if running.child is None:
            raise RuntimeError("the service did not start")
        pid = running.child.pid
        for name, path in ROUTES.items():
            wrk(base_url + path, token, 3, connections)  # warm: URL cache, plans, buffers
            sent, server_settings = statements[name]
            for number in range(1, rounds + 1):
                spy = None
                if profile_dir is not None and number == 1:
                    out = profile_dir / f"{name}.{PROFILE_FORMATS[profile_format]}"
                    spy = profiled(pid, seconds, out, profile_format)
                cpu_before = cpu_seconds(pid)
                http = wrk(base_url + path, token, seconds, connections)
                cpu = cpu_seconds(pid) - cpu_before
                answered = http["requests_per_s"] * seconds
                if spy is not None:
                    spy.wait(timeout=60)
                pg = asyncio.run(floor(dsn, sent, seconds, server_settings, connections))
                done = Round(
                    name, number, http["requests_per_s"], http.get("p50_ms"),
                    http.get("p99_ms"), pg, 1000 * cpu / answered,
                )  # fmt: skip
                results.append(done)
                print(
                    f"{PROGRESS} {name} round {number}/{rounds}: "
                    f"{done.requests_per_s:,.0f} req/s, floor {done.floor_per_s:,.0f} pages/s, "
                    f"CPU {done.cpu_ms_per_request:.2f} ms/request, p50 {done.p50_ms} ms, "
                    f"p99 {done.p99_ms} ms",
                    flush=True,
                )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn")
    parser.add_argument("--scale", default="plan")
    parser.add_argument("--seconds", type=float, default=10.0, help="of wrk, then of the floor")
    parser.add_argument("--rounds", type=int, default=3, help="per route (at least 1)")
    parser.add_argument(
        "--connections", type=int, default=CONNECTIONS,
        help="of wrk and of the floor (1 for a profile of CPU alone)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--profile", type=Path, default=None, metavar="DIR",
        help="sample the service with py-spy during each route's first round: DIR/<route>.svg",
    )  # fmt: skip
    parser.add_argument("--profile-format", choices=sorted(PROFILE_FORMATS), default="flamegraph")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds < 1 or args.connections < 1:
        parser.error("--rounds, --seconds and --connections must be at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    rounds = measure(
        args.dsn, args.scale, args.seconds, args.profile, args.profile_format, args.rounds,
        connections=args.connections,
    )  # fmt: skip
    print("median [95% interval] of the rounds; floor: the page as JSON from PostgreSQL")
    for route, stats in estimates(rounds).items():
        print(summary_line(route, stats))
    if args.json is not None:
        found = component(rounds, args.scale, args.seconds, args.rounds, args.connections)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(found, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
