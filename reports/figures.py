"""Benchmark figures: one flat mapping built from a pytest-benchmark JSON (``--benchmark-json``).

Keys:
    ``bench.<group>.<name>.median_s``  every benchmark's median, in seconds;
    ``saving.<claim>``, ``speedup.<claim>``  for every pair of benchmarks whose ``extra_info``
        names the same ``claim`` with ``side`` ``before`` and ``after``: ``1 - after/before`` and
        ``before/after`` of their medians (same run, same data);
    ``extra_info["figures"]``  any figures a benchmark computed itself, merged as they are (so
        are ``extra_info`` keys that start like a figure key, ``bench.search.http_p95_ms``);
        a pair's own ratios win over figures of the same name;
    ``extra_info["rate_figure"]``  ``extra_info["units"] / median`` under that key;
    ``dataset.heavy_assets``  the heavy user's assets in the measured dataset.

    python -m reports.figures reports/out/bench-micro.json   # writes reports/out/figures/bench.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reports import uncertainty

ROOT: Final = Path(__file__).resolve().parent.parent
FIGURES_DIR: Final = ROOT / "reports" / "out" / "figures"
BENCH_FIGURES: Final = FIGURES_DIR / "bench.json"

FIGURE_PREFIXES: Final = ("bench.", "saving.", "speedup.", "dataset.")

_NON_KEY = re.compile(r"[^A-Za-z0-9_]+")


class FiguresError(ValueError):
    """The benchmark JSON cannot give figures (malformed, or a pair named twice)."""


@dataclass(frozen=True)
class Pair:
    claim: str
    before: str
    after: str
    before_median_s: float
    after_median_s: float
    before_rounds: tuple[float, ...] = ()
    after_rounds: tuple[float, ...] = ()

    @property
    def speedup(self) -> float:
        return self.before_median_s / self.after_median_s if self.after_median_s > 0 else 0.0

    @property
    def saving(self) -> float:
        return 1.0 - self.after_median_s / self.before_median_s if self.before_median_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "before": self.before,
            "after": self.after,
            "before_median_s": self.before_median_s,
            "after_median_s": self.after_median_s,
            "speedup": self.speedup,
            "saving": self.saving,
            "before_interval_s": _interval(self.before_rounds),
            "after_interval_s": _interval(self.after_rounds),
        }


def _interval(data: tuple[float, ...]) -> list[float] | None:
    estimate = uncertainty.median_ci(data)
    return None if estimate is None else [estimate.low, estimate.high]


def benchmark_key(bench: Mapping[str, Any]) -> str:
    """``<group>.<name>``: the test name without ``test_``, parameters joined with dots, less the
    parts that repeat the group (``queries.by_job`` + ``test_after[by_job]`` ->
    ``queries.by_job.after``; ``fixture_load`` + ``test_fixture_load`` -> ``fixture_load``)."""
    group = str(bench.get("group") or "ungrouped")
    name = _NON_KEY.sub(".", str(bench["name"]).removeprefix("test_")).strip(".")
    in_group = set(group.split("."))
    parts = [part for part in name.split(".") if part not in in_group]
    return ".".join([group, *parts])


def rounds(bench: Mapping[str, Any]) -> list[float]:
    """Every timed round of a benchmark (pytest-benchmark's JSON keeps them all)."""
    data = (bench.get("stats") or {}).get("data")
    return [float(x) for x in data] if isinstance(data, list) else []


def _median(bench: Mapping[str, Any]) -> float | None:
    stats = bench.get("stats")
    if not isinstance(stats, Mapping):
        return None
    median = stats.get("median")
    return float(median) if isinstance(median, int | float) else None


def _benchmarks(bench_json: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    benchmarks = bench_json.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise FiguresError("not a pytest-benchmark JSON: no 'benchmarks' list")
    return benchmarks


def find_pairs(bench_json: Mapping[str, Any]) -> list[Pair]:
    sides: dict[str, dict[str, tuple[str, float, tuple[float, ...]]]] = {}
    for bench in _benchmarks(bench_json):
        extra = bench.get("extra_info") or {}
        claim, side, median = extra.get("claim"), extra.get("side"), _median(bench)
        if not claim or side not in ("before", "after") or median is None:
            continue
        named = sides.setdefault(str(claim), {})
        if side in named:
            raise FiguresError(
                f"claim {claim!r} has two '{side}' benchmarks: {named[side][0]} and "
                f"{bench['fullname']}"
            )
        named[side] = (str(bench["fullname"]), median, tuple(rounds(bench)))
    return [
        Pair(claim, before[0], after[0], before[1], after[1], before[2], after[2])
        for claim, s in sorted(sides.items())
        if "before" in s and "after" in s
        for before, after in [(s["before"], s["after"])]
    ]


def unpaired_claims(bench_json: Mapping[str, Any]) -> list[str]:
    paired = {p.claim for p in find_pairs(bench_json)}
    claims = {
        str((b.get("extra_info") or {}).get("claim"))
        for b in _benchmarks(bench_json)
        if (b.get("extra_info") or {}).get("claim")
    }
    return sorted(claims - paired)


def figures_from_json(bench_json: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """The figures and their meta (scale, seed, pairs, machine, commit) of one benchmark run."""
    figures: dict[str, float] = {}
    scales: set[str] = set()
    seeds: set[int] = set()
    for bench in _benchmarks(bench_json):
        extra = bench.get("extra_info") or {}
        median = _median(bench)
        if median is not None:
            key = f"bench.{benchmark_key(bench)}.median_s"
            figures[key] = median
            time = uncertainty.median_ci(rounds(bench)) or uncertainty.Estimate.exact(median)
            uncertainty.put(figures, key, time)
            rate_key, units = extra.get("rate_figure"), extra.get("units")
            if rate_key and isinstance(units, int | float) and median > 0:
                rate = uncertainty.Estimate(
                    units / median, units / time.high, units / max(time.low, 1e-12), time.n
                )
                uncertainty.put(figures, str(rate_key), rate)
        own = {k: v for k, v in extra.items() if str(k).startswith(FIGURE_PREFIXES)}
        for key, value in {**own, **(extra.get("figures") or {})}.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[str(key)] = float(value)
        heavy = extra.get("heavy_assets")
        if isinstance(heavy, int):
            figures["dataset.heavy_assets"] = max(figures.get("dataset.heavy_assets", 0), heavy)
        if "scale" in extra:
            scales.add(str(extra["scale"]))
        if isinstance(extra.get("seed"), int):
            seeds.add(extra["seed"])
    pairs = find_pairs(bench_json)
    for pair in pairs:
        figures[f"saving.{pair.claim}"] = pair.saving
        figures[f"speedup.{pair.claim}"] = pair.speedup
        before, after = pair.before_rounds, pair.after_rounds
        uncertainty.put(figures, f"saving.{pair.claim}", uncertainty.saving_ci(before, after))
        uncertainty.put(figures, f"speedup.{pair.claim}", uncertainty.speedup_ci(before, after))
    meta = {
        "source": "benchmarks (pytest-benchmark)",
        "scales": sorted(scales),
        "seeds": sorted(seeds),
        "pairs": [p.as_dict() for p in pairs],
        "unpaired_claims": unpaired_claims(bench_json),
        "benchmarks": len(_benchmarks(bench_json)),
        "datetime": bench_json.get("datetime"),
        "machine": _machine(bench_json.get("machine_info") or {}),
        "commit": (bench_json.get("commit_info") or {}).get("id"),
    }
    return figures, meta


def _machine(info: Mapping[str, Any]) -> dict[str, Any]:
    cpu = info.get("cpu") or {}
    return {
        "node": info.get("node"),
        "python": info.get("python_version"),
        "cpu": cpu.get("brand_raw") if isinstance(cpu, Mapping) else None,
        "cores": cpu.get("count") if isinstance(cpu, Mapping) else None,
    }


def format_pairs(bench_json: Mapping[str, Any]) -> list[str]:
    return [
        f"{p.claim:<40} before {p.before_median_s * 1e3:10.3f} ms  after "
        f"{p.after_median_s * 1e3:10.3f} ms  speed-up {p.speedup:8.1f}x  saving {p.saving:7.1%}"
        for p in find_pairs(bench_json)
    ]


def write_figures(path: Path, figures: Mapping[str, float], meta: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"figures": dict(sorted(figures.items())), "meta": dict(meta)}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise FiguresError(f"{path}: not a JSON object")
    return data


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.figures", description=__doc__)
    parser.add_argument("bench_json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--out", type=Path, default=BENCH_FIGURES)
    args = parser.parse_args(list(argv) if argv is not None else None)
    bench_json = read_json(args.bench_json)
    figures, meta = figures_from_json(bench_json)
    write_figures(args.out, figures, meta)
    for line in format_pairs(bench_json):
        print(line)
    print(f"{len(figures)} figures -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
