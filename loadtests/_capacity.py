"""``python -m loadtests._capacity``: workspace-page req/s at its p95 threshold, per worker count.

    python -m loadtests._capacity --workers 1,2 --rounds 3 [--scale small]

One database and dataset; then, for each round and each worker count in turn (interleaved, so
both see the same machine), the service with ``WORKERS=n`` in its own process and a closed-loop
client stepping its concurrency up: every step, ``--step-s`` seconds of ``GET /v1/workspace``
as the fixture users, the heavy one weighted as in the load test. A step passes when its p95
(exact histogram, reports.latency) is within the target's ``workspace_page.p95_ms`` and nothing
failed; the figure is the highest passing step's requests per second. The URL cache's per-level
hit rates come from the service's ``/metrics`` after the run; with ``REDIS_URL`` each service
start gets a Redis key prefix of its own (deleted afterwards), so every run starts cold. Prints
JSON (medians and every round). No Locust here: the client is aiohttp in this process, and its
own CPU is part of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

import aiohttp

from fixtures.database import provide_database
from fixtures.prepare import ensure_dataset
from fixtures.processes import ServiceProcess, say
from fixtures.spec import spec_for
from loadtests._config import REPO, LoadSettings, fixture_identities
from reference.db.redis_keys import unlink_prefix
from reference.settings import child_secrets
from reports.latency import Histogram
from reports.service_metrics import fetch_url_cache
from reports.targets import load_targets

STEPS: Final = (1, 4, 16, 64, 128, 256)
REQUEST_TIMEOUT_S: Final = 30.0


async def step(url: str, tokens: list[str], weights: list[float], users: int, seconds: float
               ) -> dict[str, Any]:  # fmt: skip
    histogram, failures = Histogram(), 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def user(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.monotonic() < deadline:
            token = random.choices(tokens, weights)[0]
            started = time.perf_counter()
            try:
                async with session.get(
                    "/v1/workspace?limit=50", headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    await resp.read()
                    failures += resp.status != 200
            except (aiohttp.ClientError, TimeoutError):
                failures += 1
            histogram.record_ms((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=users)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(user(session) for _ in range(users)))
        elapsed = time.monotonic() - started
    return {
        "users": users,
        "rps": histogram.count / elapsed,
        "p95_ms": histogram.percentile_ms(95),
        "failures": failures,
    }


def measure(url: str, tokens: list[str], weights: list[float], p95_ms: float, step_s: float
            ) -> dict[str, Any]:  # fmt: skip
    before = fetch_url_cache(url)
    steps = []
    best = 0.0
    for users in STEPS:
        result = asyncio.run(step(url, tokens, weights, users, step_s))
        steps.append(result)
        say(f"  {users:>4} users: {result['rps']:.0f} req/s, p95 {result['p95_ms']:.1f} ms")
        if result["failures"] or (result["p95_ms"] or 0) > p95_ms:
            break
        best = max(best, result["rps"])
    cache = fetch_url_cache(url) - before
    rates = {f"{name}_hit_rate": level.hit_rate for name, level in cache.levels.items()}
    return {"rps_at_p95": best, "steps": steps, "hit_rate": cache.hit_rate, **rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--scale", default=os.environ.get("SCALE", "plan"))
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    threshold = load_targets().threshold("workspace_page")
    p95_ms = threshold.p95_ms if threshold and threshold.p95_ms else 500.0
    settings = LoadSettings.from_env()
    # Generated once when unset: every service start and every token share them.
    secrets = child_secrets()
    identities = fixture_identities(args.scale, settings.heavy_weight, secrets)
    tokens, weights = [i.token for i in identities], [i.weight for i in identities]
    storage_dir = Path(os.environ.get("STORAGE_DIR", str(REPO / ".data" / "storage")))
    rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    logs = settings.out_dir / "logs"
    with provide_database() as info:
        asyncio.run(ensure_dataset(info.dsn, spec_for(args.scale), storage_dir))
        for number in range(args.rounds):
            for n in counts:
                say(f"round {number + 1}: WORKERS={n}")
                prefix = f"wsbcap:{uuid.uuid4().hex[:12]}:"
                env = {**os.environ, **secrets, "REDIS_PREFIX": prefix}
                log_path = logs / f"capacity-service-r{number + 1}-w{n}.log"
                service = ServiceProcess(
                    info.dsn, "unified", storage_dir, log_path, env=env, workers=n
                )
                try:
                    with service:
                        rounds[n].append(measure(service.url, tokens, weights, p95_ms, args.step_s))
                finally:
                    if os.environ.get("REDIS_URL"):
                        unlink_prefix(os.environ["REDIS_URL"], prefix)
    summary = {
        f"workers_{n}": {
            "rps_at_p95_median": statistics.median(r["rps_at_p95"] for r in runs),
            "rps_at_p95": [round(r["rps_at_p95"], 1) for r in runs],
        }
        for n, runs in rounds.items()
    }
    out = {"p95_ms": p95_ms, "scale": args.scale, "summary": summary, "rounds": rounds}
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
